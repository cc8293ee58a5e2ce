"""How a network does its job: simulation, state space, fixed points, mechanisms, distillation."""
