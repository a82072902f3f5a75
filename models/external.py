"""Models trained by other libraries (``model.backbone: external``): what to install and run.

An external trial hands the split to a library's own command-line trainer (mace-torch's
``mace_run_train``, NequIP/Allegro's ``nequip-train``), in a Python environment of its own
made by Ray's ``runtime_env`` from the exact versions given here, and evaluates the result
through the library's ASE calculator (``farfield.orchestrator.external``). farfield never
imports these libraries; this module is only their configuration.

=============  ============================================  =====================================
``trainer``    installs (``version`` pins the first)           trains
=============  ============================================  =====================================
``mace``       ``mace-torch``                                 ``mace_run_train --model MACE``
``maceles``    ``mace-torch`` and the ``les`` package          ``mace_run_train --model MACELES``
``nequip``     ``nequip``                                      ``nequip-train`` (NequIP GNN)
``allegro``    ``nequip-allegro`` (+ a ``nequip==`` pin)       ``nequip-train`` (Allegro model)
=============  ============================================  =====================================
"""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from farfield.data.config import StrictModel

#: The ``model.backbone`` value of a model trained by another library.
EXTERNAL = "external"
#: trainer → the distribution ``version`` pins.
DISTRIBUTIONS = {"mace": "mace-torch", "maceles": "mace-torch", "nequip": "nequip", "allegro": "nequip-allegro"}
#: trainer → ``backbone`` tag of its runs (the report's model name): the library, not farfield's backbones.
BACKBONE_TAGS = {"mace": "ext-mace", "maceles": "ext-mace", "nequip": "ext-nequip", "allegro": "ext-allegro"}
#: trainer → ``long_range`` tag: MACELES is mace-torch's MACE with latent Ewald summation (LES).
LONG_RANGE_TAGS = {"mace": [], "maceles": ["les"], "nequip": [], "allegro": []}

_VERSION = re.compile(r"^\d+(\.\d+){0,3}((a|b|rc)\d+)?(\.post\d+)?$")
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==\d[^\s;,<>=!~*]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def exact_version(value: str, where: str) -> str:
    """``value`` if it is one exact release (``0.3.16``, ``2.13.0``); raises naming ``where`` otherwise."""
    if not _VERSION.match(value):
        raise ValueError(f"{where} must be one exact version such as '0.3.16' (pinned), got {value!r}")
    return value


def installed_torch() -> str:
    """The torch release farfield runs with, without its local label (``2.13.0+cpu`` → ``2.13.0``)."""
    return importlib.metadata.version("torch").split("+")[0]


class LesSource(StrictModel):
    """Where MACELES's ``les`` package (ChengUCB/les, not on PyPI) comes from, at a pinned commit.

    ``repository``: a git URL (installed as ``les @ git+URL@commit``) or the path of a local
    clone or mirror (the commit is exported from it: for machines without GitHub).
    ``commit``: 40 hex digits. The default is the commit farfield's LES fidelity check uses.
    """

    repository: str = "https://github.com/ChengUCB/les"
    commit: str = "c8063fad18e3d59cb4d783e0ed5a1efea8d55b8d"

    @field_validator("commit")
    @classmethod
    def _full_commit(cls, value: str) -> str:
        if not _COMMIT.match(value):
            raise ValueError(f"model.external.les.commit must be a full 40-hex-digit commit, got {value!r}")
        return value


class ExternalConfig(StrictModel):
    """A model trained by another library's own trainer (``model.backbone: external``).

    ``trainer``: ``mace`` | ``maceles`` | ``nequip`` | ``allegro`` (module docstring).
    ``version``: exact release of the trainer's distribution, e.g. ``0.3.16`` for mace-torch.
    ``torch``: exact torch release of the environment; default: the one farfield runs with
    (filled in when the config is made, so the logged config shows it).
    ``requirements``: more exact pins, ``name==version`` (e.g. ``nequip==0.19.1`` for allegro).
    ``les``: source of the ``les`` package (``maceles`` only; filled in with the default).
    ``installer``: ``pip`` or ``uv``, the ``runtime_env`` field Ray builds the environment with.
    ``index_urls``: extra package indexes, e.g. ``https://download.pytorch.org/whl/cpu`` for
    torch's CPU wheels (default: none, only the indexes pip/uv are configured with).
    ``options``: the trainer's own settings, applied last: for mace/maceles command-line
    arguments of ``mace_run_train`` without dashes (``{max_L: 1, swa: true}``); for
    nequip/allegro dotted paths into the generated YAML (``{training_module.model.num_layers: 2}``).
    """

    trainer: Literal["mace", "maceles", "nequip", "allegro"]
    version: str
    torch: str = Field(default_factory=lambda: installed_torch())
    requirements: list[str] = Field(default_factory=list)
    les: LesSource | None = None
    installer: Literal["pip", "uv"] = "pip"
    index_urls: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("version")
    @classmethod
    def _pinned_version(cls, value: str) -> str:
        return exact_version(value, "model.external.version")

    @field_validator("torch")
    @classmethod
    def _pinned_torch(cls, value: str) -> str:
        return exact_version(value, "model.external.torch")

    @field_validator("requirements")
    @classmethod
    def _pinned_requirements(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _PINNED.match(value.strip()):
                raise ValueError(f"model.external.requirements: {value!r} is not pinned; write name==version")
        return [value.strip() for value in values]

    @model_validator(mode="before")
    @classmethod
    def _les_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("trainer") == "maceles" and data.get("les") is None:
            data = {**data, "les": {}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ExternalConfig:
        if self.trainer != "maceles" and self.les is not None:
            raise ValueError(f"model.external.les is for trainer 'maceles' only (trainer is {self.trainer!r})")
        names = {_name(r) for r in self.requirements}
        for own in ("torch", DISTRIBUTIONS[self.trainer]):
            if own in names:
                raise ValueError(f"model.external.requirements pins {own!r}, which "
                                 f"model.external.{'torch' if own == 'torch' else 'version'} already pins")
        if self.trainer == "allegro" and "nequip" not in names:
            raise ValueError("model.external.requirements must pin nequip for trainer 'allegro' "
                             "(e.g. 'nequip==0.19.1'): nequip-allegro only asks for a minimum")
        return self

    def pinned_requirements(self) -> list[str]:
        """What the environment installs: torch, the trainer's distribution, then ``requirements``
        (MACELES's ``les`` is added by the orchestrator, which knows where a local clone lives)."""
        return [f"torch=={self.torch}", f"{DISTRIBUTIONS[self.trainer]}=={self.version}", *self.requirements]

    @property
    def backbone_tag(self) -> str:
        """The run's ``backbone`` tag, e.g. ``ext-mace``."""
        return BACKBONE_TAGS[self.trainer]

    @property
    def long_range_tag(self) -> list[str]:
        """The run's long-range scheme: ``["les"]`` for MACELES, else none."""
        return list(LONG_RANGE_TAGS[self.trainer])


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
