"""Building: the Relax graph rewritten to call the scheduled kernels (:mod:`.rewrite`), compiled for
the target (:mod:`.build`), exported to / loaded from a module directory (:mod:`.module_dir`)."""
