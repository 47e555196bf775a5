"""`dataselect eval`: does a model trained on a selection do better on a held-out target than one trained
on a random subset of the same size, by more than the noise between seeds? (METHODS.md 11; docs/eval.md)

    statistics  bits per byte, 95% confidence intervals, the paired gap to random, signal-to-noise
    utility     the repetition-utility model of data filtering (compute-aware budgets) and its fit
    arms        what each arm trains on: a run's selection, random subsets, the pool, RS2, keep fractions
    trainer     the base model (a proxy pre-trained once on the pool, or a causal LM) fine-tuned per arm and seed
    runner      the whole comparison: resume per (arm, seed), eval.json, the printed table, report.html
    figures     report.html's eval sections, declared as data (select/figures.py) and drawn by io/report.py
"""
