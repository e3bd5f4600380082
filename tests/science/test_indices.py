"""science.indices: what a missing-band error tells the user to change."""

from snap_operators.science.indices import missing_bands_hint


def hint(missing, present):
    return missing_bands_hint(missing, present, "use a model of the bands it has", "graphs/s1s2.xml")


def test_the_fix_named_is_the_one_that_applies():
    assert hint(["NDBI"], ["B4", "NDVI"]) == "add NDBI to the SpectralIndices 'indices' parameter"
    # source bands: not copied through SpectralIndices, or copied and absent from the image
    assert hint(["B12"], ["NDVI"]) == "set copySourceBands to true in SpectralIndices (or BandMerge the source bands)"
    assert hint(["B12"], ["B02", "NDVI"]) == "the image has no B12: use a model of the bands it has"
    # radar: no Sentinel-1 band at all, or a Sentinel-1 product without the one asked for
    assert hint(["Sigma0_VV_db", "Sigma0_VH_db"], ["B2"]) == \
        "collocate the Sentinel-1 product onto the Sentinel-2 grid (graphs/s1s2.xml)"
    assert hint(["Sigma0_VH_db"], ["B2", "Sigma0_VV_db"]) == \
        "the Sentinel-1 product has no Sigma0_VH_db: use a model of the bands it has"
    # a radar index (the S1+S2 rules' VV_db) on an S2-only product: both steps
    assert hint(["VV_db"], ["B2"]) == ("add VV_db to the SpectralIndices 'indices' parameter and collocate the "
                                       "Sentinel-1 product onto the Sentinel-2 grid (graphs/s1s2.xml)")
    assert hint(["VV_db"], ["B2", "Sigma0_VV"]) == "add VV_db to the SpectralIndices 'indices' parameter"
    # a linear Sentinel-1 product where the model reads dB: convert it, not "use another model"
    assert hint(["Sigma0_VV_db", "Sigma0_VH_db"], ["B2", "Sigma0_VV", "Sigma0_VH"]) == (
        "the product holds Sigma0_VV, Sigma0_VH in linear units: convert to dB first with LinearToFromdB "
        "(sourceBands=Sigma0_VV,Sigma0_VH), which writes Sigma0_VV_db, Sigma0_VH_db")
