"""Offline teacher labelling of users' recordings (``facealign label``).

``teacher`` runs MediaPipe in its own Python environment over a small binary protocol
(``worker``), ``mapping`` turns its 478-point mesh into the 70 REP-155 points, ``scoring``
scores a frame by flip consistency, and ``labeler`` copies a bag and adds ground truth.
"""
