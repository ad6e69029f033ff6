"""Training: the synthetic tasks, toy-model training and pause training.

* :mod:`interp.training.tasks`: the synthetic tasks (one generator each, seeded).
* :mod:`interp.training.toy`: tiny native models trained on those tasks, vanilla or myopic.
* :mod:`interp.training.pause`: pause training of a pretrained model (a LoRA-style adapter).
"""
