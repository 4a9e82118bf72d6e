// Placeholder until src/dashboard lands: says plainly that the dashboard is missing.
#include <cstdio>

#include "cli/commands.h"

namespace baton::cli {

std::unique_ptr<DashboardHandle> StartDashboard(Runtime&, const RunArgs&) {
  std::fprintf(stderr, "baton: the dashboard is not built into this binary yet\n");
  return nullptr;
}
void WaitDashboard(DashboardHandle&, const RunReport&, std::atomic<int>&) {}

}  // namespace baton::cli
