"""lshlab - the Python side of lshlab: read a results file (lshlab.results), draw
its figures (lshlab.plot) and summarise it (lshlab.summary).

Run the tools through tools/plot and tools/summary, which pick a Python that has
h5py, numpy (and matplotlib), or as `python3 -m lshlab.plot` / `-m lshlab.summary`
with tools/py on PYTHONPATH.  The definitions of every column are in
docs/definitions.md."""
