"""Scoring predictions against labels: ``rtpose eval``.

``pairing`` pairs frames of the two files as arrays, ``oks`` computes similarity and
the greedy matching, ``metrics`` the figures, ``evaluate`` puts them under stable keys,
``command`` prints and writes them.
"""
