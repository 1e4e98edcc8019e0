"""Analysis: how expected each note of a score is to a model, in the measures the field uses.

- ``information``: information content and entropy per note, of the whole event (the word) and
  of its pitch alone, from a language model or the n-gram baseline.
- ``folds``: cross-validation by piece (which pieces each of K models held out) and choosing,
  for each piece, the model that never saw it.
- ``ppm``: IDyOM's short-term model (a PPM model of the piece so far) and its entropy-weighted
  way of combining two models' predictions.
- ``idyom``: IDyOM's benchmark: its data sets, its published figures, its protocol's means.
- ``report``: the CSV, the per-piece table, the coloured score and the page that
  ``infer.py --surprisal`` writes.

IDyOM (Pearce 2005) is the reference: its column names are used where it has one, and
``bench/bench_idyom.py`` follows its protocol (10-fold cross-validation, mean pitch information
content per note, tied notes merged into one event).
"""
