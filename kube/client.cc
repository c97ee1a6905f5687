#include "kube/client.h"

#include <iterator>

namespace bulkhead::kube {

StatusOr<ListResult> listAll(Client& client, const ResourceType& type, const std::string& ns,
                             ListOptions options) {
  ListResult all;
  do {
    ASSIGN_OR_RETURN(ListResult page, client.list(type, ns, options));
    if (all.items.empty()) {
      all.items = std::move(page.items);
    } else {
      std::move(page.items.begin(), page.items.end(), std::back_inserter(all.items));
    }
    all.resourceVersion = page.resourceVersion;
    options.continueToken = page.continueToken;
  } while (!options.continueToken.empty());
  return all;
}

}  // namespace bulkhead::kube
