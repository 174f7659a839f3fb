from setuptools import find_packages, setup

setup(
    name='mmpatch',
    version='0.1.0',
    description='Dense prediction across patch sizes (32 down to 1) on OpenMMLab',
    packages=find_packages(include=['mmpatch', 'mmpatch.*']),
    python_requires='>=3.10',
    # The pinned stack is installed by tools/setup.sh (requirements/*.txt);
    # mmcv needs a wheel or a source build that pip cannot choose by itself.
)
