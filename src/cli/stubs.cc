// Placeholders until the dashboard and cluster parts land: they say plainly what is missing.
#include <cstdio>

#include "cli/commands.h"

namespace baton::cli {

std::unique_ptr<DashboardHandle> StartDashboard(Runtime&, const RunArgs&) {
  std::fprintf(stderr, "baton: the dashboard is not built into this binary yet\n");
  return nullptr;
}
void WaitDashboard(DashboardHandle&, const RunReport&, std::atomic<int>&) {}
void AddClusterCommands(CLI::App&) {}
int RunClusterCommand(CLI::App&) { return 2; }

}  // namespace baton::cli
