"""Stand-ins for QuFabric's services, one module each; ``run.py`` picks one."""
