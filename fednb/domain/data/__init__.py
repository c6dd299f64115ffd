"""The domain's datasets: private files or tables, their metadata, and the mock analysts see."""
