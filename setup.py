from pathlib import Path

from setuptools import find_packages, setup


setup(
    name="vlmamba",
    version="0.1.0",
    description="Mamba-VL and Pythia-VL vision-language models for Hugging Face Transformers",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["vlmamba", "vlmamba.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4,<2.16",
        "torchvision",
        "transformers>=5.23,<6",
        "tokenizers>=0.22",
        "huggingface_hub>=1.0",
        "accelerate>=1.0",
        "peft>=0.17",
        "datasets>=4.7",  # the Json feature (mixed-type columns of mixtures and shapes)
        "evaluate>=0.4",
        "pycocoevalcap>=1.2",  # CIDEr
        "timm>=1.0.15",
        "safetensors",
        "pillow",
        "numpy",
        "matplotlib>=3.7",  # the retrieval experiment's plot
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist", "hypothesis", "ruff"],
        "cuda": ["mamba-ssm>=2.2", "causal-conv1d>=1.4"],
    },
    entry_points={"console_scripts": ["vlmamba=vlmamba.cli:main"]},
)
