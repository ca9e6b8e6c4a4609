"""A small WordNet-like taxonomy over the 1000 ImageNet classes the shipped EfficientNet-Lite0 predicts.

Why: the Qwen-Image reports balance data over a hierarchical taxonomy (retention by quality inside each node,
caps and resampling of the long tail). No WordNet ships offline, so this module declares a two-level tree by
hand from the ILSVRC class order (animals are contiguous index ranges: fish, birds, amphibians, reptiles,
invertebrates, dogs, other mammals; foods, landscapes, people and plants close the list) and, for the 526
artifact classes, by explicit name lists (vehicles, buildings and structures, clothing and accessories, musical
instruments, electronics, furniture and household goods; the rest is `object/other`). It is coarse and its
object side is a judgement call, stated here rather than hidden: a `taxonomy_path` says what the classifier
thinks the main subject is, at the granularity of these nodes.
"""

from __future__ import annotations

from functools import lru_cache

TAXONOMY_VERSION = "imagenet1k-coarse-v1"

# (first index, last index, path) over the ILSVRC-2012 class order.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0, 6, "animal/fish"),
    (7, 24, "animal/bird"),
    (25, 32, "animal/amphibian"),
    (33, 68, "animal/reptile"),
    (69, 126, "animal/invertebrate"),
    (127, 146, "animal/bird"),
    (147, 150, "animal/mammal"),
    (151, 268, "animal/dog"),
    (269, 280, "animal/mammal"),
    (281, 293, "animal/cat"),
    (294, 299, "animal/mammal"),
    (300, 326, "animal/invertebrate"),
    (327, 329, "animal/invertebrate"),
    (330, 388, "animal/mammal"),
    (389, 397, "animal/fish"),
    (924, 969, "food"),
    (970, 980, "nature/landscape"),
    (981, 983, "person"),
    (984, 998, "plant"),
)

# Artifact classes by exact ImageNet name, `; `-separated (names contain spaces, hyphens and apostrophes).
_OBJECTS: dict[str, str] = {
    "object/vehicle": (
        "aircraft carrier; airliner; airship; ambulance; amphibian; beach wagon; bicycle-built-for-two; "
        "bobsled; bullet train; cab; canoe; catamaran; container ship; convertible; dogsled; electric "
        "locomotive; fireboat; fire engine; forklift; freight car; garbage truck; go-kart; golfcart; gondola; "
        "half track; harvester; horse cart; jeep; jinrikisha; lifeboat; limousine; liner; minibus; minivan; "
        "Model T; moped; motor scooter; mountain bike; moving van; oxcart; paddlewheel; passenger car; "
        "pickup; police van; racer; recreational vehicle; school bus; schooner; snowmobile; snowplow; space "
        "shuttle; speedboat; sports car; steam locomotive; streetcar; submarine; tank; tow truck; tractor; "
        "trailer truck; tricycle; trimaran; trolleybus; unicycle; warplane; wreck; yawl; mobile home; barrow; "
        "shopping cart; thresher; plow; missile; projectile"
    ),
    "object/building": (
        "apiary; bakery; barbershop; barn; bell cote; boathouse; bookshop; breakwater; butcher shop; castle; "
        "church; cinema; cliff dwelling; confectionery; dam; dock; dome; drilling platform; fountain; "
        "greenhouse; grocery store; library; lumbermill; megalith; monastery; mosque; obelisk; palace; patio; "
        "pier; planetarium; prison; restaurant; shoe shop; steel arch bridge; stupa; suspension bridge; "
        "thatch; tile roof; tobacco shop; totem pole; toyshop; triumphal arch; viaduct; water tower; yurt; "
        "stone wall; worm fence; picket fence; chainlink fence; beacon; radio telescope; solar dish; altar; "
        "vault; mountain tent; maze; bannister; carousel; stage; scoreboard; flagpole; maypole"
    ),
    "object/clothing": (
        "abaya; academic gown; apron; bathing cap; bearskin; bib; bikini; bolo tie; bonnet; bow tie; "
        "brassiere; breastplate; bulletproof vest; cardigan; chain mail; Christmas stocking; cloak; clog; "
        "cowboy boot; cowboy hat; crash helmet; cuirass; diaper; feather boa; football helmet; fur coat; "
        "gasmask; gown; hair slide; hoopskirt; jean; jersey; kimono; knee pad; lab coat; Loafer; maillot; "
        "maillot tank suit; mask; military uniform; miniskirt; mitten; mortarboard; necklace; overskirt; "
        "pajama; pickelhaube; poncho; running shoe; sandal; sarong; shower cap; ski mask; sock; sombrero; "
        "stole; suit; sunglass; sunglasses; sweatshirt; swimming trunks; trench coat; vestment; wig; Windsor "
        "tie; backpack; purse; wallet; umbrella; digital watch; neck brace; handkerchief"
    ),
    "object/instrument": (
        "accordion; acoustic guitar; banjo; bassoon; cello; chime; cornet; drum; electric guitar; flute; "
        "French horn; gong; grand piano; harmonica; harp; maraca; marimba; oboe; ocarina; organ; panpipe; "
        "sax; steel drum; trombone; upright; violin; whistle"
    ),
    "object/electronics": (
        "cash machine; cassette; cassette player; CD player; cellular telephone; computer keyboard; desktop "
        "computer; dial telephone; digital clock; electric fan; entertainment center; hand-held computer; "
        "hard disc; home theater; iPod; joystick; laptop; loudspeaker; microphone; modem; monitor; mouse; "
        "notebook; oscilloscope; pay-phone; photocopier; Polaroid camera; printer; projector; radio; reflex "
        "camera; remote control; screen; space bar; switch; tape player; television; typewriter keyboard; web "
        "site; vending machine; gas pump; parking meter; traffic light; spotlight; table lamp; lampshade"
    ),
    "object/household": (
        "barber chair; bassinet; bathtub; bath towel; bookcase; chest; chiffonier; china cabinet; cradle; "
        "crib; desk; dining table; dishwasher; doormat; Dutch oven; espresso maker; fire screen; folding "
        "chair; four-poster; frying pan; iron; microwave; mixing bowl; park bench; pillow; "
        "plate rack; quilt; refrigerator; rocking chair; rotisserie; shoji; shower curtain; sliding door; "
        "soup bowl; stove; studio couch; teapot; throne; toaster; toilet seat; tray; tub; vacuum; vase; "
        "wardrobe; washbasin; washer; window screen; window shade; wok; caldron; Crock Pot; coffee mug; "
        "coffeepot; cup; goblet; beer glass; pitcher; plate; ladle; spatula; strainer; wooden spoon; waffle "
        "iron; medicine chest; hamper; candle; broom; bucket; ashcan; pot; radiator; space heater; sleeping "
        "bag; prayer rug; mosquito net; theater curtain; swing"
    ),
}


@lru_cache(maxsize=1)
def class_paths() -> tuple[str, ...]:
    """The taxonomy path of each of the 1000 ImageNet classes, in class-index order."""
    from flywheel.models.efficientnet_lite import IMAGENET_CLASSES

    by_name = {name.strip(): path for path, names in _OBJECTS.items() for name in names.split(";")}
    paths = []
    for index, name in enumerate(IMAGENET_CLASSES):
        found = next((p for lo, hi, p in _RANGES if lo <= index <= hi), None)
        paths.append(found or by_name.get(name, "object/other"))
    return tuple(paths)


def path_of(index: int) -> str:
    """Taxonomy path of ImageNet class `index` (e.g. 'animal/dog', 'object/vehicle', 'nature/landscape')."""
    return class_paths()[index]
