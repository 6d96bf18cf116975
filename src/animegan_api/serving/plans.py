"""A request as a plan: what to cut from the upload, which forwards run on which styles, how the answer is laid out.

Every entry point builds a :class:`Plan` and the one
:class:`~animegan_api.serving.runner.Runner` runs it: ``/v1/transform`` (one
style; a face style framed on the largest face, or the centre square when
there is none), ``/v1/compare`` (the original, then one tile per style, each
framed as its style wants), ``/v1/avatar`` (one face, or a sheet of every face)
and ``animegan-api convert`` (any of these, offline). A face style therefore
frames a photo the same way wherever it is sent.

Because a plan says what will run before a pixel is decoded, admission prices
all of it from the upload's header (:func:`price`): every forward's model time
and the largest forward's memory. Only ``face=all`` cannot know its count
before detection: it is priced at one forward, then counted again before it
queues for the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from animegan_api.pictures import imaging
from animegan_api.pictures.faces import Face
from animegan_api.pictures.framing import DEFAULT_MARGIN, FaceChoice, Frame
from animegan_api.runtime.predictors import LoadedStyle

__all__ = [
    "FACE_HEADER_NAMES",
    "Faces",
    "Output",
    "Plan",
    "Price",
    "Tile",
    "avatar_plan",
    "compare_plan",
    "face_headers",
    "price",
    "transform_plan",
]

FACE_HEADER_NAMES = ("X-Faces-Found", "X-Face-Boxes", "X-Face-Index", "X-Face-Box", "X-Face-Roll")
# Cutting a square holds about 35 bytes an output pixel (the resized photo, its mirrored and blurred copies, the
# mask, the turn); a sheet 6 more a pixel for each face. Held from the decode to the answer (picture_bytes).
_CUT_BYTES, _SHEET_BYTES = 35, 6


@dataclass(frozen=True)
class Output:
    """How the answer is encoded."""

    format: imaging.OutputFormat = "png"
    quality: int = 90
    keep_size: bool = False

    @property
    def media_type(self) -> str:
        return imaging.MEDIA_TYPES[self.format]


@dataclass(frozen=True)
class Faces:
    """Frame faces found in the photo: which, with how much room, and whether a photo without one is refused."""

    choice: FaceChoice = "largest"
    margin: float = DEFAULT_MARGIN
    required: bool = True


@dataclass(frozen=True)
class Tile:
    """One style's part of the answer: run on the whole picture (``faces`` None) or on framed faces."""

    style: LoadedStyle
    faces: Faces | None = None


@dataclass(frozen=True)
class Plan:
    """Everything one request asks for, known before its upload is decoded."""

    tiles: tuple[Tile, ...]
    side: int  # the longest side of whole pictures; the side of face squares
    output: Output = Output()
    with_original: bool = False  # a captioned sheet that starts with the original (compare)
    size_field: str = "max_side"  # the request's name for ``side``, for the advice in refusals

    @property
    def styles(self) -> list[LoadedStyle]:
        return list({id(tile.style): tile.style for tile in self.tiles}.values())

    @property
    def faces(self) -> Faces | None:
        """How faces are framed, when any tile frames them (one detection serves every tile)."""
        return next((tile.faces for tile in self.tiles if tile.faces), None)

    def target(self, style: LoadedStyle, original: tuple[int, int]) -> tuple[int, int]:
        """The input size of ``style``'s forward on a whole picture of ``original`` size."""
        return imaging.plan_size(*original, self.side, style.size_multiple)

    def square(self, style: LoadedStyle) -> int:
        """The side of ``style``'s face squares: the plan's side, rounded down to the style's size rule."""
        return imaging.plan_size(self.side, self.side, self.side, style.size_multiple)[0]

    def cache_fields(self) -> dict[str, object]:
        """Everything that makes two answers to the same upload differ."""
        return {
            "tiles": [(t.style.spec.name, str(t.style.path), t.faces and vars(t.faces)) for t in self.tiles],
            "side": self.side,
            "output": vars(self.output),
            "with_original": self.with_original,
        }


def transform_plan(style: LoadedStyle, max_side: int, output: Output) -> Plan:
    return Plan((_tile(style),), max_side, output)


def compare_plan(styles: list[LoadedStyle], max_side: int, output: Output) -> Plan:
    return Plan(tuple(_tile(style) for style in styles), max_side, output, with_original=True)


def avatar_plan(style: LoadedStyle, size: int, faces: Faces, output: Output) -> Plan:
    return Plan((Tile(style, faces),), size, output, size_field="size")


def _tile(style: LoadedStyle) -> Tile:
    """A face style is framed on the largest face (the centre square without one); any other takes the picture."""
    return Tile(style, Faces(required=False) if style.spec.preprocess == "face" else None)


@dataclass(frozen=True)
class Price:
    """What admission charges a plan: each forward's style and input size, and the sizes its memory follows."""

    forwards: list[tuple[LoadedStyle, tuple[int, int]]]
    sizes: imaging.Sizes
    styles: list[LoadedStyle] = field(default_factory=list)
    side: int = 0
    size_field: str = "max_side"
    keep_size: bool = False
    held_bytes: int = 0  # face cuts and sheets, held from the decode to the answer


def decode_side(plan: Plan, max_pixels: int) -> int:
    """The longest side to decode at: the plan's own, or the full photo when faces are searched in it."""
    return max_pixels if plan.faces else plan.side


def price(plan: Plan, header: imaging.Sizes, max_faces: int, found: int | None = None) -> Price:
    """The plan's forwards and memory from the upload's header; ``found`` faces once they are counted.

    Memory counts a ``face=all`` sheet at ``max_faces`` faces from the start:
    bytes are reserved before the faces are found and cannot grow after.
    """
    forwards: list[tuple[LoadedStyle, tuple[int, int]]] = []
    largest, extra = (0, 0), 0
    for tile in plan.tiles:
        if tile.faces is None:
            size = plan.target(tile.style, header.original)
            forwards.append((tile.style, size))
        else:
            side = plan.square(tile.style)
            size, count = (side, side), _face_count(tile.faces, found, max_faces)
            forwards += [(tile.style, size)] * count
            sheet_faces = max_faces if tile.faces.choice == "all" else 1
            extra += (_CUT_BYTES + _SHEET_BYTES * sheet_faces) * side * side
        largest = max(largest, size, key=lambda wh: wh[0] * wh[1])
    original = largest if plan.faces and len(plan.tiles) == 1 else header.original
    sizes = imaging.Sizes(original, largest, header.decoded_pixels)
    return Price(forwards, sizes, plan.styles, plan.side, plan.size_field, plan.output.keep_size, extra)


def _face_count(faces: Faces, found: int | None, max_faces: int) -> int:
    if faces.choice != "all":
        return 1
    return 1 if found is None else max(1, min(found, max_faces))


def face_headers(faces: list[Face], chosen: list[int], squares: list[Frame]) -> dict[str, str]:
    """Where the faces are, in the uploaded picture's pixels: what a frontend draws and offers to pick."""
    headers = {
        "X-Faces-Found": str(len(faces)),
        "X-Face-Boxes": ";".join(",".join(map(str, face.rounded_box())) for face in faces),
    }
    if chosen:
        headers["X-Face-Index"] = ",".join(map(str, chosen))
        headers["X-Face-Box"] = ";".join(",".join(map(str, faces[index].rounded_box())) for index in chosen)
        headers["X-Face-Roll"] = ";".join(f"{square.angle:.1f}" for square in squares)
    return headers
