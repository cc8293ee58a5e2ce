"""The networks: the noise-driven RNN of HMM emulation and the task RNN of the IBL system."""
