"""The test kit: the one way each test runs connc, builds a repository, makes a key or starts
a local server. tests/ is on sys.path (pytest's rootdir conftest), so tests import `kit.*`."""
