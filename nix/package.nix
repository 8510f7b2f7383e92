# The hive Python application: hive-supervisor, hivectl and hive-mcp.
{ lib, python3Packages }:

python3Packages.buildPythonApplication {
  pname = "hive";
  version = "0.1.0";
  pyproject = true;

  src = lib.cleanSource ../.;

  build-system = with python3Packages; [
    setuptools
    wheel
  ];

  dependencies = with python3Packages; [
    pykka
    trio
    msgpack
    apsw
    hypercorn
    quart
    quart-trio
    mcp
    pydantic
  ];

  # The test suite needs root, bubblewrap and real sockets: CI runs it outside the build
  # sandbox (.ci/run). Here we only check that the package imports, the helpers the agents
  # run included (they start on the bare interpreter with PYTHONPATH set by hive itself).
  doCheck = false;
  pythonImportsCheck = [
    "hive"
    "hive.sandboxes"
    "hive.journal"
    "hive.mcp_server"
    "hive.mcp_relay"
    "hive.runtimes.scripted_agent"
  ];

  meta = {
    description = "A supervisor for a fleet of long-lived AI coding agents";
    mainProgram = "hive-supervisor";
    platforms = lib.platforms.linux;
  };
}
