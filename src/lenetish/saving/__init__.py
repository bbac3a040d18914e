"""Saving and loading: training checkpoints, weight files, and exports to other runtimes.

:mod:`.checkpoint` writes and reads a fit's full state (atomically, validated before it is
unpickled); :mod:`.checkpoint_checks` checks a loaded one against the model and optimizer;
:mod:`.weightfiles` reads and writes model weights (safetensors or a state dict) with their
dataset record; :mod:`.export` writes ONNX, TorchScript and ``torch.export`` programs.
"""
