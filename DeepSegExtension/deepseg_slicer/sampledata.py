"""DeepSeg's sample cases in Slicer's Sample Data module.

``register_sample_data()`` (called once Slicer has started) adds a "DeepSeg" category with each
catalog sample (the demo's LiTS liver CT).  Nothing is downloaded until the user clicks it: the
click goes through the DeepSeg model store (``ModelStore.fetch_sample``: the PyPI wheel named in the
catalog, checked against its sha256, kept for later offline use), and ``load_sample`` puts the CT
into the scene with the catalog's geometry.
"""
from __future__ import annotations

CATEGORY = "DeepSeg"


def load_sample(sample_id: str, scene, store=None):
    """The sample's image as a volume node in ``scene`` (fetched through the store the first time)."""
    from deepseg.cli.demo import read_sample_image
    from deepseg.models.store import ModelStore

    from . import mrml

    store = store or ModelStore()
    sample = store.catalog.sample(sample_id)
    installed = store.fetch_sample(sample_id)
    volume = read_sample_image(installed.path / sample["image"], sample, sample_id)
    return mrml.volume_to_node(volume, scene, name=sample_id)


def register_sample_data(thumbnail: str) -> list[str]:
    """Register every catalog sample with Slicer's Sample Data module (``thumbnail``: an image file
    shown on its button); returns their ids."""
    import SampleData
    import slicer

    from deepseg.models.catalog import load_catalog

    samples = load_catalog().samples

    def download(source):
        node = load_sample(source.sampleName, slicer.mrmlScene)
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        return node

    for sample_id, sample in samples.items():
        # SampleDataSource needs uris as a string or list with matching fileNames/nodeNames (it takes
        # len() of each): the store's source stands there, the download is customDownloader's
        source = sample["source"]
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=CATEGORY, sampleName=sample_id, uris=f"{source['type']}:{source.get('requirement', sample_id)}",
            fileNames=sample["image"], nodeNames=sample_id, customDownloader=download, thumbnailFileName=thumbnail)
    return list(samples)
