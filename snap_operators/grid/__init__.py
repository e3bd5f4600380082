"""Grids: regridding (:mod:`.regrid`), pixel regions and polygons (:mod:`.region`), CRS helpers (:mod:`.crs`), true pixel areas (:mod:`.areas`)."""
