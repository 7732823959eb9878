// sluicectl: dry-run NetworkPolicy questions against manifests (DESIGN.md §7).
#include <iostream>
#include <string>
#include <vector>

#include "policyd/ctl/app.h"

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  int rc = sluice::ctl::run(args, std::cout, std::cerr);
  std::cout.flush();
  return rc;
}
