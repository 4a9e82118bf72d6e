// Placeholder until src/cluster lands.
#include "cli/commands.h"

namespace baton::cli {

void AddClusterCommands(CLI::App&) {}
int RunClusterCommand(CLI::App&) { return 2; }

}  // namespace baton::cli
