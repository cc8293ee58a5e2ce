"""Grids of runs on a local process pool or an existing Dask/SLURM cluster."""
