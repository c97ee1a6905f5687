// Command istio-inject runs Istio's own sidecar injector, and Istio's own waypoint deployment
// controller, on test workloads, so that Bulkhead's tests see pods and workloads exactly as Istio
// writes them. Nothing here re-implements Istio: the injection templates, the values and the mesh
// config come from the istio.io/istio module this program is built against (scripts/testenv.sh
// pins it as ISTIO_VERSION and builds this file in a throwaway wrapper module), rendered by
// Istio's own chart renderer from the charts embedded in istio.io/istio/manifests.
//
// Usage:
//
//	istio-inject [flags] < in.yaml > out.yaml
//	    Reads a multi-document YAML stream of workloads (Pod, Deployment, StatefulSet, DaemonSet,
//	    ReplicaSet, Job, CronJob, ...) and writes them back injected, through Istio's
//	    inject.IntoResourceFile (the code behind `istioctl kube-inject`). Documents of other
//	    kinds pass through unchanged; workloads Istio skips (sidecar.istio.io/inject: "false",
//	    hostNetwork) come back unchanged with a note on stderr.
//
//	    A CronJob gets the pod-level labels and annotations on spec.jobTemplate.metadata, not on
//	    the pod template: that is what Istio's kube-inject does.
//
//	    --output yaml|json     yaml (default): a multi-document stream, as IntoResourceFile
//	                           writes it. json: one JSON array, one object per (non-empty) input
//	                           document, in input order; the same content as the yaml.
//	    --cni                  Istio CNI on (istioctl: --set components.cni.enabled=true, i.e.
//	                           values.pilot.cni.enabled=true): the template emits an
//	                           `istio-validation` init container instead of `istio-init`.
//	    --native-sidecars=true|false
//	                           sets Istio's ENABLE_NATIVE_SIDECARS feature
//	                           (features.EnableNativeSidecars). true: istio-proxy is an init
//	                           container with restartPolicy: Always; false: a regular container.
//	                           Default true: istiod's default ("auto") resolves to true when every
//	                           node runs Kubernetes >= 1.33. A pod's own
//	                           `sidecar.istio.io/nativeSidecar` annotation still wins, as in Istio.
//	    --hub HUB              image hub (default docker.io/istio, as in released charts)
//	    --tag TAG              image tag (default 1.28.0); the proxy image is HUB/proxyv2:TAG
//	    --revision REV         control-plane revision (default: none, i.e. "default")
//	    --profile NAME         istioctl installation profile the settings are rendered with
//	                           (default "default"; e.g. "ambient")
//
//	istio-inject waypoint --name NAME --namespace NS [flags]
//	    Prints, as JSON, the waypoint Deployment that istiod's gateway deployment controller
//	    (istio.io/istio/pilot/pkg/config/kube/gatewaycommon) server-side-applies for a Gateway of
//	    class istio-waypoint shaped like `istioctl waypoint apply` makes it. The controller runs
//	    for real against an in-memory fake Kubernetes client; its apply patches are captured.
//
//	    --name NAME            Gateway name (default "waypoint")
//	    --namespace NS         Gateway namespace (default "default")
//	    --for TYPE             istio.io/waypoint-for label (service|workload|all|none; unset
//	                           by default, as istioctl leaves it)
//	    --uid UID              the Gateway's metadata.uid (default: derived from NS/NAME)
//	    --all                  print every applied object (ServiceAccount, Deployment, Service,
//	                           ...) as a JSON array instead of only the Deployment
//	    --hub, --tag, --revision, --native-sidecars as above; --profile defaults to "ambient"
//	                           (waypoints need istiod's ambient mode)
//
//	istio-inject --version
//	    Prints the istio.io/istio and istio.io/api module versions this binary was built from
//	    and the sha256 of its source file (stamped at build time).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	gateway "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"istio.io/api/label"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/pilot/pkg/config/kube/gatewaycommon"
	"istio.io/istio/pilot/pkg/config/memory"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/config/protocol"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/kclient"
	istiolog "istio.io/istio/pkg/log"
	"istio.io/istio/pkg/revisions"
)

// sourceHash is stamped by the build (-X main.sourceHash=<sha256 of this file>).
var sourceHash = "unknown"

const (
	defaultHub = "docker.io/istio"
	defaultTag = "1.28.0"
	// Istio's namespace, as in the charts' default values.
	systemNamespace = "istio-system"
	// The Kubernetes version the waypoint controller is told it runs on (the test control plane's).
	kubeMajor, kubeMinor, kubeGitVersion = "1", "35", "v1.35.4"
	// Set on the re-executed process (see applyIstiodEnv).
	reexecMarker = "ISTIO_INJECT_REEXEC"
)

func main() {
	// Istio's logger writes to stdout by default; keep stdout for the objects.
	logOpts := istiolog.DefaultOptions()
	logOpts.OutputPaths = []string{"stderr"}
	logOpts.ErrorOutputPaths = []string{"stderr"}
	logOpts.SetDefaultOutputLevel(istiolog.OverrideScopeName, istiolog.WarnLevel)
	if err := istiolog.Configure(logOpts); err != nil {
		fatalf("configure logging: %v", err)
	}

	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version"):
		printVersion()
	case len(args) > 0 && args[0] == "waypoint":
		err = runWaypoint(args[1:])
	default:
		err = runInject(args)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "istio-inject: "+format+"\n", a...)
	os.Exit(1)
}

func printVersion() {
	versions := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Replace != nil {
				versions[d.Path] = d.Replace.Version
			} else {
				versions[d.Path] = d.Version
			}
		}
	}
	fmt.Printf("istio.io/istio %s\n", orUnknown(versions["istio.io/istio"]))
	fmt.Printf("istio.io/api %s\n", orUnknown(versions["istio.io/api"]))
	fmt.Printf("source sha256:%s\n", sourceHash)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// ---------------------------------------------------------------------------------------------
// Istio's installation settings, rendered by Istio's own chart renderer

type installSettings struct {
	hub, tag, revision, profile string
	cni                         bool
}

func (s *installSettings) addFlags(fs *flag.FlagSet, defaultProfile string) {
	fs.StringVar(&s.hub, "hub", defaultHub, "image hub")
	fs.StringVar(&s.tag, "tag", defaultTag, "image tag")
	fs.StringVar(&s.revision, "revision", "", "control-plane revision")
	fs.StringVar(&s.profile, "profile", defaultProfile, "istioctl installation profile")
}

// installation is what istiod's injector and gateway controller work from: the
// istio-sidecar-injector ConfigMap (templates + values) and the mesh config.
type installation struct {
	config     inject.Config
	values     inject.ValuesConfig
	rawValues  string
	meshConfig *meshconfig.MeshConfig
}

// renderInstallation renders the installation with istioctl's renderer (render.GenerateManifest,
// the same path `istioctl install` and Istio's own injection tests take) from the charts embedded
// in istio.io/istio/manifests, and picks out the ConfigMaps istiod reads.
func renderInstallation(s installSettings) (*installation, error) {
	set := []string{"profile=" + s.profile, "hub=" + s.hub, "tag=" + s.tag}
	if s.cni {
		set = append(set, "components.cni.enabled=true")
	}
	if s.revision != "" {
		set = append(set, "revision="+s.revision)
	}
	sets, _, err := render.GenerateManifest(nil, set, false, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("render the Istio installation: %v", err)
	}
	injectorName, meshName := "istio-sidecar-injector", "istio"
	if s.revision != "" {
		injectorName += "-" + s.revision
		meshName += "-" + s.revision
	}
	var rawConfig, rawValues, rawMesh string
	var foundInjector, foundMesh bool
	for _, ms := range sets {
		for _, m := range ms.Manifests {
			if m.GetKind() != gvk.ConfigMap.Kind || m.GetNamespace() != systemNamespace {
				continue
			}
			data, _, _ := unstructured.NestedStringMap(m.Object, "data")
			switch m.GetName() {
			case injectorName:
				rawConfig, rawValues, foundInjector = data["config"], data["values"], true
			case meshName:
				rawMesh, foundMesh = data["mesh"], true
			}
		}
	}
	if !foundInjector || !foundMesh {
		return nil, fmt.Errorf("the rendered installation has no ConfigMap %s/%s or %s/%s",
			systemNamespace, injectorName, systemNamespace, meshName)
	}
	cfg, err := inject.UnmarshalConfig([]byte(rawConfig))
	if err != nil {
		return nil, err
	}
	vc, err := inject.NewValuesConfig(rawValues)
	if err != nil {
		return nil, err
	}
	// istiod reads the mesh ConfigMap on top of Istio's defaults, as here.
	mc, err := mesh.ApplyMeshConfig(rawMesh, mesh.DefaultMeshConfig())
	if err != nil {
		return nil, fmt.Errorf("mesh config: %v", err)
	}
	return &installation{config: cfg, values: vc, rawValues: rawValues, meshConfig: mc}, nil
}

// applyIstiodEnv makes this process run with the feature environment the chart gives istiod
// (values pilot.env, e.g. PILOT_ENABLE_AMBIENT=true in the ambient profile). Istio reads its
// feature flags from the environment while its packages initialize, so the process re-executes
// itself once with them set.
func applyIstiodEnv(inst *installation) error {
	pilot, _ := inst.values.Map()["pilot"].(map[string]any)
	envs, _ := pilot["env"].(map[string]any)
	var missing []string
	for k, v := range envs {
		val := fmt.Sprint(v)
		if cur, ok := os.LookupEnv(k); !ok || cur != val {
			missing = append(missing, k+"="+val)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Getenv(reexecMarker) != "" {
		return fmt.Errorf("istiod environment %v did not take effect", missing)
	}
	sort.Strings(missing)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), missing...)
	env = append(env, reexecMarker+"=1")
	return syscall.Exec(exe, os.Args, env)
}

func setNativeSidecars(on bool) {
	if on {
		features.EnableNativeSidecars = features.NativeSidecarModeEnabled
	} else {
		features.EnableNativeSidecars = features.NativeSidecarModeDisabled
	}
}

// ---------------------------------------------------------------------------------------------
// sidecar injection

func runInject(args []string) error {
	fs := flag.NewFlagSet("istio-inject", flag.ContinueOnError)
	var s installSettings
	s.addFlags(fs, "default")
	fs.BoolVar(&s.cni, "cni", false, "Istio CNI on (istio-validation instead of istio-init)")
	native := fs.Bool("native-sidecars", true, "istio-proxy as a native sidecar (init container, restartPolicy Always)")
	output := fs.String("output", "yaml", "yaml or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %v (input is read from stdin)", fs.Args())
	}
	if *output != "yaml" && *output != "json" {
		return fmt.Errorf("--output must be yaml or json")
	}
	inst, err := renderInstallation(s)
	if err != nil {
		return err
	}
	if err := applyIstiodEnv(inst); err != nil {
		return err
	}
	setNativeSidecars(*native)

	warn := func(w string) { fmt.Fprint(os.Stderr, strings.TrimLeft(w, "\n")) }
	var out bytes.Buffer
	// The same call `istioctl kube-inject` makes (no injector: render locally).
	if err := inject.IntoResourceFile(nil, inst.config.Templates, inst.values, s.revision, inst.meshConfig,
		bufio.NewReader(os.Stdin), &out, warn); err != nil {
		return err
	}
	if *output == "yaml" {
		_, err := os.Stdout.Write(out.Bytes())
		return err
	}
	docs, err := yamlDocsToJSON(out.Bytes())
	if err != nil {
		return err
	}
	return writeJSON(docs)
}

// yamlDocsToJSON converts each non-empty document of a YAML stream to JSON.
func yamlDocsToJSON(in []byte) ([]json.RawMessage, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(in)))
	docs := []json.RawMessage{}
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, err
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue
		}
		docs = append(docs, j)
	}
	return docs, nil
}

func writeJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ---------------------------------------------------------------------------------------------
// waypoint

type appliedObject struct {
	resource, namespace, name string
	object                    map[string]any
}

func runWaypoint(args []string) error {
	fs := flag.NewFlagSet("istio-inject waypoint", flag.ContinueOnError)
	var s installSettings
	s.addFlags(fs, "ambient")
	name := fs.String("name", constants.DefaultNamespaceWaypoint, "Gateway name")
	namespace := fs.String("namespace", "default", "Gateway namespace")
	trafficType := fs.String("for", "", "istio.io/waypoint-for label (unset by default)")
	uid := fs.String("uid", "", "Gateway metadata.uid (default: derived from namespace/name)")
	all := fs.Bool("all", false, "print every applied object, not only the Deployment")
	native := fs.Bool("native-sidecars", true, "Istio's ENABLE_NATIVE_SIDECARS feature")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	inst, err := renderInstallation(s)
	if err != nil {
		return err
	}
	if err := applyIstiodEnv(inst); err != nil {
		return err
	}
	setNativeSidecars(*native)
	if _, ok := gatewaycommon.BuiltinGatewayClasses[constants.WaypointGatewayClassName]; !ok {
		return fmt.Errorf("istiod does not manage the %s class here (ambient is off in profile %q)",
			constants.WaypointGatewayClassName, s.profile)
	}

	// The Gateway as `istioctl waypoint apply` writes it.
	gw := &gateway.Gateway{
		TypeMeta:   metav1.TypeMeta{Kind: gvk.KubernetesGateway.Kind, APIVersion: gvk.KubernetesGateway.GroupVersion()},
		ObjectMeta: metav1.ObjectMeta{Name: *name, Namespace: *namespace, Generation: 1},
		Spec: gateway.GatewaySpec{
			GatewayClassName: constants.WaypointGatewayClassName,
			Listeners: []gateway.Listener{{
				Name:     "mesh",
				Port:     15008,
				Protocol: gateway.ProtocolType(protocol.HBONE),
			}},
		},
	}
	if *trafficType != "" {
		gw.Labels = map[string]string{label.IoIstioWaypointFor.Name: *trafficType}
	}
	if s.revision != "" {
		if gw.Labels == nil {
			gw.Labels = map[string]string{}
		}
		gw.Labels[label.IoIstioRev.Name] = s.revision
	}
	if *uid == "" {
		*uid = uuid.NewSHA1(uuid.NameSpaceURL, []byte("bulkhead-test:"+*namespace+"/"+*name)).String()
	}
	gw.UID = types.UID(*uid)

	client := kube.NewFakeClient(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: *namespace}},
	)
	client.Kube().Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion =
		&version.Info{Major: kubeMajor, Minor: kubeMinor, GitVersion: kubeGitVersion}
	if _, err := kclient.NewWriteClient[*gateway.Gateway](client).Create(gw); err != nil {
		return fmt.Errorf("create gateway: %v", err)
	}

	// The controller server-side-applies through the dynamic client; capture those patches.
	var mu sync.Mutex
	var applied []appliedObject
	client.Dynamic().(*dynamicfake.FakeDynamicClient).PrependReactor("patch", "*",
		func(a clienttesting.Action) (bool, runtime.Object, error) {
			pa := a.(clienttesting.PatchAction)
			obj := map[string]any{}
			if err := json.Unmarshal(pa.GetPatch(), &obj); err != nil {
				return true, nil, err
			}
			if pa.GetSubresource() == "" {
				mu.Lock()
				applied = append(applied, appliedObject{pa.GetResource().Resource, pa.GetNamespace(), pa.GetName(), obj})
				mu.Unlock()
			}
			return true, &unstructured.Unstructured{Object: obj}, nil
		})

	// istiod's revision is "default" unless it is a revisioned control plane.
	revision := s.revision
	if revision == "" {
		revision = "default"
	}
	env := model.NewEnvironment()
	env.Watcher = meshwatcher.NewTestWatcher(inst.meshConfig)
	// As istiod's push context does: ProxyConfig resources (none here) over the mesh defaults.
	env.PushContext().ProxyConfigs = model.GetProxyConfigs(memory.Make(collections.Pilot), inst.meshConfig)
	env.PushContext().InitDone.Store(true)

	webhookConfig := func() inject.WebhookConfig {
		return inject.WebhookConfig{Templates: inst.config.Templates, Values: inst.values, MeshConfig: inst.meshConfig}
	}
	stop := make(chan struct{})
	defer close(stop)
	tw := revisions.NewTagWatcher(client, revision, systemNamespace)
	dc := gatewaycommon.NewDeploymentController(client, cluster.ID(clusterID(inst)), env, webhookConfig,
		func(func()) {}, tw, revision, systemNamespace)
	client.RunAndWait(stop)
	go tw.Run(stop)
	kube.WaitForCacheSync("tag watcher", stop, tw.HasSynced)
	if err := dc.Reconcile(types.NamespacedName{Namespace: *namespace, Name: *name}); err != nil {
		return fmt.Errorf("reconcile: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if *all {
		objs := make([]map[string]any, 0, len(applied))
		for _, o := range applied {
			objs = append(objs, o.object)
		}
		return writeJSON(objs)
	}
	for _, o := range applied {
		if o.resource == "deployments" {
			return writeJSON(o.object)
		}
	}
	return fmt.Errorf("the controller applied no Deployment (applied: %d objects)", len(applied))
}

// clusterID is istiod's CLUSTER_ID as the chart sets it.
func clusterID(inst *installation) string {
	if c := inst.values.Struct().GetGlobal().GetMultiCluster().GetClusterName(); c != "" {
		return c
	}
	return constants.DefaultClusterName
}
