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
    package_data={"vlmamba": ["model_card.md"]},  # the model card template, read through importlib.resources
    python_requires=">=3.10",
    # Ranges for library users. Each upper bound is the newest release line that `.ci/run` tests (the lock and
    # the newest releases inside these ranges); the exact tested set is requirements-lock.txt.
    install_requires=[
        "torch>=2.4,<2.15",
        "torchvision<0.30",
        "transformers>=5.24,<5.25",  # 5.24: every model takes and returns its cache as `cache`
        "tokenizers>=0.22,<0.24",
        "huggingface_hub>=1.0,<3",
        "accelerate>=1.0,<2",
        "peft>=0.17,<0.22",
        "datasets>=4.7,<6",  # 4.7: the Json feature (mixed-type columns of mixtures and shapes)
        "evaluate>=0.4,<0.5",
        "pycocoevalcap>=1.2,<1.3",  # CIDEr
        "timm>=1.0.15,<1.1",
        "safetensors<1",
        "pillow<14",
        "numpy<3",
        "matplotlib>=3.7,<4",  # the retrieval experiment's plot
    ],
    extras_require={
        "dev": ["pytest>=8,<10", "pytest-xdist<4", "hypothesis<7", "ruff<0.18"],
        # No `cuda` extra: mamba-ssm and causal-conv1d build against the installed torch, so they are installed after
        # it with `--no-build-isolation` (README, "Installing the CUDA kernels").
    },
    entry_points={"console_scripts": ["vlmamba=vlmamba.cli:main"]},
)
