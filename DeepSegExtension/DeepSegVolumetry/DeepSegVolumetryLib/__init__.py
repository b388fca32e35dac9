"""Parameter node, logic, widget and Segment Statistics plugin of the DeepSegVolumetry module."""
