"""trio-echo's benchmark suite.

``python -m benchmarks run`` drives trio-echo and its peer servers with a
compiled load generator and writes JSON, markdown and a chart; see
``benchmarks/README.md``.
"""
