"""Knob families: one module per kind of kernel setting (see ``base.KnobFamily``)."""
