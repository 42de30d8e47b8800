"""Autotuning of tvmprune kernels with MetaSchedule.

* :mod:`.tasks`   -- one tuning task per distinct kernel of a compiled model;
* :mod:`.measure` -- builder / runner glue (real index arrays, cross-compiled ``.so``), timing kernels;
* :mod:`.rpc_session` -- bounded tracker requests and the jobs that run on a board;
* :mod:`.rpc_worker` -- the worker process those jobs run in, killed when a stage overruns;
* :mod:`.board_pool` -- boards under one key: retries, lost-board detection (also for ``compare``);
* :mod:`.board_runner` -- MetaSchedule runner over the pool; unmeasured candidates kept out of the database;
* :mod:`.interrupt` -- Ctrl-C / SIGTERM: stop soon, no worker process left;
* :mod:`.db`      -- the JSON tuning database in a log directory (sanitising, counting, best records);
* :mod:`.tuner`   -- the tuning loop (XGBoost cost model, evolutionary search, resume, report);
* :mod:`.apply`   -- replay the best records in ``compile`` (``schedule_source_for``);
* :mod:`.command` -- ``tvmprune tune``.
"""
