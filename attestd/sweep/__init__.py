"""Storage sweeps: check what pict-rs, an S3 bucket or a folder already holds.

``sources`` list, fetch and act on objects; ``store`` keeps runs and swept objects;
``runner`` drives a run through the check pipeline.
"""
