"""Autotuning of tvmprune kernels with MetaSchedule.

* :mod:`.tasks`   -- one tuning task per distinct kernel of a compiled model;
* :mod:`.measure` -- builder / runner glue (real index arrays, cross-compiled ``.so``, RPC);
* :mod:`.db`      -- the JSON tuning database in a log directory (sanitising, counting, best records);
* :mod:`.tuner`   -- the tuning loop (XGBoost cost model, evolutionary search, resume, report);
* :mod:`.apply`   -- replay the best records in ``compile`` (``schedule_source_for``);
* :mod:`.command` -- ``tvmprune tune``.
"""
