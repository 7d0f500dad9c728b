"""The CPU benchmark suite's parts (bench/cpu_suite.py is the entry point).

models: which recipes it runs; candidates: the engines under test, loaded once; byhand: what a user
gets from ORT's and NNCF's documented defaults; measure: accuracy and interleaved timing; run: one
model end to end; report: the Markdown table and summary.
"""
