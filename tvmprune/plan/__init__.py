"""Planning: what each conv / linear layer becomes (format, block size), and why.

* :mod:`.layer` -- :class:`LayerInfo` (what a planner sees) and :class:`LayerPlan` (its decision);
* :mod:`.roofline` -- the roofline parameters and the cost terms kernel families predict with;
* :mod:`.planners` -- the planners (``auto``, ``dense``, ``sparse``) over the kernel family registry;
* :mod:`.calibrate` -- measuring the roofline parameters on this machine.
"""
