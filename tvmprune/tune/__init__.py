"""Autotuning of tvmprune kernels with MetaSchedule.

* :mod:`.tasks`   -- one tuning task per distinct kernel of a compiled model;
* :mod:`.measure` -- builder / runner glue (real index arrays, cross-compiled ``.so``), timing kernels;
* :mod:`.rpc_session` -- bounded tracker requests and the jobs that run on a board;
* :mod:`.rpc_worker` -- the worker process those jobs run in, killed when a stage overruns;
* :mod:`.board_pool` -- boards under one key: retries, lost-board detection (also for ``compare``);
* :mod:`.board_runner` -- MetaSchedule runner over the pool; unmeasured candidates kept out of the database;
* :mod:`.interrupt` -- Ctrl-C / SIGTERM: stop soon, no worker process left;
* :mod:`.db`      -- the JSON tuning database in a log directory (sanitising, counting, best records);
* :mod:`.builder` -- a MetaSchedule builder whose worker processes live across batches;
* :mod:`.measurer` -- the builder and runner of one run (local or on boards);
* :mod:`.allot`   -- trials per task by estimated gain, given back by exhausted tasks;
* :mod:`.budget`  -- ``--time-budget``: when the search stops so the run ends in time;
* :mod:`.console` -- native stderr to the log directory, progress bar / one line per task / quiet;
* :mod:`.curve`   -- the best-so-far curve (``curve.json``, ``curve.png``);
* :mod:`.end_to_end` -- the whole model, default vs tuned, built and timed by ``tune``;
* :mod:`.tuner`   -- the tuning loop (XGBoost cost model, evolutionary search, resume, report);
* :mod:`.apply`   -- replay the best records in ``compile`` (``schedule_source_for``);
* :mod:`.command` -- ``tvmprune tune``.
"""
