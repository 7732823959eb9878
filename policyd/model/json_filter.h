// Internal to the decoder: the JSON fast path. Large JSON inputs are `kubectl get pods -A -o
// json` dumps where almost every byte (managedFields, annotations, container images, env,
// probes, status.conditions) is irrelevant to policy. Building nlohmann's full DOM for them
// costs more than lexing; this parser builds a DOM that keeps only the fields the object
// decoder reads, moving strings instead of copying them.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sluice::model::detail {

// What is dropped (see json_filter.cc): under metadata everything but name, namespace, labels
// and the annotation sluice.io/enforcement;
// under status everything but podIP, podIPs; under spec.containers[*] and
// spec.initContainers[*] everything but name, ports, restartPolicy; the values (not the keys)
// of other spec fields that only Pods have. Everything else, including every NetworkPolicy
// field and unknown fields, is kept, so validation sees what it would in the full document.
// On malformed input: an error "parse error at line L, column C: ...".
//
// Streaming: `onItem(item, inRootArray)` is called for each complete object that is an element
// of a top-level array or of the top-level object's "items" array (a List). When it returns
// true the item has been consumed and is freed at once instead of being kept in the returned
// tree, so a 100,000-pod List never exists as one DOM.
//
// Duplicate keys: the last value is kept, as the API server's JSON decoding does. Each one is
// reported as a field path ("metadata.labels.app"): those inside a streamed item to `onItem`,
// relative to the item; the others in `duplicateKeys`, relative to the root ("items[3].spec").
// Keys of dropped fields are not tracked.
using ItemSink = std::function<bool(const nlohmann::json& item, bool inRootArray,
                                    const std::vector<std::string>& duplicateKeys)>;
Result<nlohmann::json> parseJsonFiltered(std::string_view text, const ItemSink& onItem = {},
                                         std::vector<std::string>* duplicateKeys = nullptr);

}  // namespace sluice::model::detail
