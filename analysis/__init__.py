"""OOD diagnostics of farfield experiments: MLflow runs → tidy tables → diagnostics → report.

    run_layout       the MLflow run layout: tag, param, metric and artifact names (writer and reader)
    mlflow_queries   the only module that talks to MLflow (find runs, fetch artifacts, log)
    loading          tidy tables: trials, test structures, the per-atom charges the trials logged
    dataset_context / placement / baseline   what loading adds to a run
    stats            CIs, slopes, paired / one-sample / Welch tests, BH correction
    summary / distance / buckets / charges / depth / pairing     the diagnostics
    diagnostics      all of them at once; findings: plain-language statements with tests
    claims / verdicts         verdicts on the paper's five claims (rules: docs/analysis.md)
    yardstick        beyond-cutoff Coulomb of the reference charges per split (the headline's yardstick)
    plots / render / report   figures, HTML + Markdown, the report folder (``farfield report``)
    md_probe         NVE stability probe through the ASE calculator

Only ``mlflow_queries`` (and the modules that load runs through it: ``loading``,
``report``) import MLflow; see docs/analysis.md.
"""
