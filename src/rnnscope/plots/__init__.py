"""Figures. Every function here takes a result object (or arrays) and returns a matplotlib Figure;
none of them simulates or computes anything beyond what it draws."""
