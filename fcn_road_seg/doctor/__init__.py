"""``fcn-road-seg doctor``: the one command a user runs after installing, on a CPU or a GPU machine.

``environment`` gathers the facts (OS, Python, package versions, GPU, TensorRT and its builder, the engine
cache folder), ``compare`` runs segmenters on frames and compares their masks (the testable core), and
``report`` runs the whole check, prints it and writes its JSON. May import the core, ``backends`` and ``trt``;
never ``ros``, ``training`` or ``evaluation`` (ROS packages are only probed for their version).
"""
