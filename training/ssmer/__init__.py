"""SSMER: self-supervised pretraining of the CMFA event encoder across event representations.

``facealign pretrain`` (:mod:`training.ssmer.cli`) streams windows from unlabelled bags
(:mod:`~training.ssmer.sources`, :mod:`~training.ssmer.stream`), turns each into several
representation views (:mod:`~training.ssmer.views`) and trains a SimSiam network
(:mod:`~training.ssmer.model`) whose encoder is the CMFA event backbone
(:mod:`~training.ssmer.loop`).
"""
