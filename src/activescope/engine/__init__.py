"""The domain-free engine: spec (the campaign language), campaign (the loop, ask/tell, resume),
store (run records), acquisition, oracle protocol, pool, registry (plugins) and cache.

It imports no domain package (chemistry, microscopy, instruments) and no torch at import time;
domain code plugs in through the registries.
"""
