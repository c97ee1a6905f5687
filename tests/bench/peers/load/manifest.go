package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// runManifest reads upstream install manifests (a kubectl List as JSON, converted from the
// projects' own YAML by `kubectl create --dry-run=client -o json`), so that each tool runs with
// what its own chart or manifest says:
//
// --in holds JSON objects one after the other, or a List.
//
//	manifest select   --in LIST --drop KIND,KIND --out LIST    every object but those kinds
//	manifest args     --in LIST --deployment NAME [--container NAME]
//	                  the container's args, one per line (first container by default)
//	manifest env      --in LIST --deployment NAME [--container NAME]
//	                  its plain KEY=VALUE environment (valueFrom entries left out), one per line
//	manifest webhooks --in LIST --url-base https://HOST:PORT --ca CA.pem --out LIST
//	                  the webhook configurations, each webhook's service reference turned into
//	                  url-base + the service's path, with the CA as caBundle
//	manifest webhook  --in CONFIG --webhook NAME --ca-out FILE
//	                  prints a registered webhook's URL and writes its caBundle (PEM) to FILE
func runManifest(args []string) error {
	if len(args) == 0 {
		return errors.New("manifest: select, args, env, webhooks or webhook")
	}
	fs := flag.NewFlagSet("manifest "+args[0], flag.ExitOnError)
	in := fs.String("in", "", "a kubectl List (JSON), or one object")
	out := fs.String("out", "", "output List (JSON)")
	drop := fs.String("drop", "", "kinds to leave out")
	deployment := fs.String("deployment", "", "Deployment name")
	container := fs.String("container", "", "container name (default: the first)")
	urlBase := fs.String("url-base", "", "https://HOST:PORT of the webhook server")
	caFile := fs.String("ca", "", "PEM CA of the webhook server")
	webhook := fs.String("webhook", "", "webhook name")
	caOut := fs.String("ca-out", "", "file for the webhook's caBundle")
	fs.Parse(args[1:])
	objects, err := readObjects(*in)
	if err != nil {
		return err
	}
	items := make([]any, len(objects))
	for i, obj := range objects {
		items[i] = obj
	}
	switch args[0] {
	case "select":
		dropped := map[string]bool{}
		for _, k := range strings.Split(*drop, ",") {
			dropped[k] = true
		}
		var kept []any
		for _, item := range items {
			if obj, _ := item.(map[string]any); obj != nil && !dropped[fmt.Sprint(obj["kind"])] {
				kept = append(kept, obj)
			}
		}
		return writeJSON(*out, map[string]any{"apiVersion": "v1", "kind": "List", "items": kept})
	case "args", "env":
		c, err := findContainer(items, *deployment, *container)
		if err != nil {
			return err
		}
		if args[0] == "args" {
			list, _ := c["args"].([]any)
			for _, a := range list {
				fmt.Println(a)
			}
			return nil
		}
		env, _ := c["env"].([]any)
		for _, e := range env {
			if kv, _ := e.(map[string]any); kv != nil && kv["value"] != nil {
				fmt.Printf("%s=%s\n", kv["name"], kv["value"])
			}
		}
		return nil
	case "webhooks":
		ca, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		var kept []any
		for _, item := range items {
			obj, _ := item.(map[string]any)
			kind := fmt.Sprint(obj["kind"])
			if kind != "ValidatingWebhookConfiguration" && kind != "MutatingWebhookConfiguration" {
				continue
			}
			hooks, _ := obj["webhooks"].([]any)
			for _, h := range hooks {
				hook := h.(map[string]any)
				cc, _ := hook["clientConfig"].(map[string]any)
				svc, _ := cc["service"].(map[string]any)
				path, _ := svc["path"].(string)
				hook["clientConfig"] = map[string]any{"url": *urlBase + path,
					"caBundle": base64.StdEncoding.EncodeToString(ca)}
			}
			kept = append(kept, obj)
		}
		return writeJSON(*out, map[string]any{"apiVersion": "v1", "kind": "List", "items": kept})
	case "webhook":
		for _, item := range items {
			obj, _ := item.(map[string]any)
			hooks, _ := obj["webhooks"].([]any)
			for _, h := range hooks {
				hook := h.(map[string]any)
				if hook["name"] != *webhook {
					continue
				}
				cc, _ := hook["clientConfig"].(map[string]any)
				url, _ := cc["url"].(string)
				bundle, _ := cc["caBundle"].(string)
				pem, err := base64.StdEncoding.DecodeString(bundle)
				if url == "" || err != nil || len(pem) == 0 {
					return fmt.Errorf("webhook %s has no url and caBundle", *webhook)
				}
				fmt.Println(url)
				return os.WriteFile(*caOut, pem, 0o644)
			}
		}
		return fmt.Errorf("no webhook %s", *webhook)
	}
	return fmt.Errorf("manifest: unknown %q", args[0])
}

func findContainer(items []any, deployment, container string) (map[string]any, error) {
	for _, item := range items {
		obj, _ := item.(map[string]any)
		if obj["kind"] != "Deployment" || metadataOf(obj)["name"] != deployment {
			continue
		}
		spec, _ := obj["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		podSpec, _ := tmpl["spec"].(map[string]any)
		containers, _ := podSpec["containers"].([]any)
		for _, c := range containers {
			cm, _ := c.(map[string]any)
			if container == "" || cm["name"] == container {
				return cm, nil
			}
		}
	}
	return nil, fmt.Errorf("no container %q in Deployment %q", container, deployment)
}
