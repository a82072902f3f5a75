"""Models trained by other libraries as farfield trials (``model.backbone: external``).

``handoff`` writes the split as extxyz, ``commands`` translates the trial config into the
trainer's arguments, ``environment`` builds the trainer's own Python environment with Ray's
``runtime_env`` and runs ``worker.py`` in it, ``trial`` logs the result like a farfield trial.
``worker.py`` and ``script_task.py`` run inside that environment; nothing here imports the
external libraries.
"""
