"""End-to-end workflows that combine the layers: train → evaluate → analyse → figures → report.

These sit below every other layer (only the command line imports them): a workflow may call the
computations of ``training``/``evaluation``/``analysis``, draw with ``plots`` and write the page with
``report``, which none of those layers may do for each other.
"""
