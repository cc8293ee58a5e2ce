"""What a network must imitate or solve: HMMs with exact statistics; the IBL environment and its observers."""
