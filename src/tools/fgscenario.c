/* fgscenario - the four distributed scenarios (see fgscenario --help). */
#include "scenarios/scenario.h"

int main(int argc, char **argv) { return fg_scenario_main(argc, argv); }
