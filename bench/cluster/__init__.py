"""Running the matrix across machines: each cell a Ray task (``python -m bench run --ray``).

Three modules, because they run in three places: ``placement`` is pure (what a device
class's cells ask of the cluster, and which nodes can give it), ``node`` is the code a
Ray task runs on a node (the cell in an isolated worker process, exactly as a local
run does), and ``driver`` is this machine's side (connecting, planning each class on a
node of that class, submitting, streaming rows back, faults and cancellation).
"""
