// Decoding Kubernetes objects from YAML or JSON: multi-document files, `List` kinds, and
// directories. Every object is validated the way the API server would before it enters the
// model; an invalid object is reported (file, object, field) and left out.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "policyd/model/types.h"

namespace sluice::model {

struct Decoded {
  Cluster cluster;
  // One entry per rejected object or unreadable file: "file: Kind ns/name: field: problem".
  std::vector<Error> errors;
  // Informational: skipped kinds, defaults applied where noteworthy.
  std::vector<std::string> notes;

  void merge(Decoded&& other);
};

// Decodes one file's text (YAML or JSON, detected from content).
Decoded decodeText(std::string_view text, const std::string& file);
// The extensions read from directories: .yaml, .yml, .json.
bool isManifestFile(const std::filesystem::path& p);
// Reads files and directories (recursively, *.yaml *.yml *.json), in sorted order.
Decoded loadPaths(const std::vector<std::string>& paths);

}  // namespace sluice::model
