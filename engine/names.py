"""Container names and IDs, by Docker's rules.

Names match `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading `/` is accepted and dropped, as Docker
stores names with one); without `--name`, a container gets `adjective_surname` like Docker's
name generator (a short list of our own). IDs are 64 random hex digits, shown as 12.
"""

from __future__ import annotations

import re
import secrets

from .errors import InvalidParameter

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = (
    "admiring adoring affectionate amazing awesome blissful bold brave busy charming clever cool compassionate "
    "confident dazzling determined eager ecstatic elastic elated elegant eloquent epic fervent festive flamboyant "
    "focused friendly frosty gallant gifted goofy gracious happy hardcore heuristic hopeful hungry infallible "
    "inspiring jolly jovial keen kind laughing loving lucid magical modest musing mystifying naughty nervous nice "
    "nifty nostalgic objective optimistic peaceful pedantic pensive practical priceless quirky quizzical relaxed "
    "reverent romantic sad serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty "
    "trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial youthful zealous zen"
).split()
SURNAMES = (
    "agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach bardeen bartik bassi "
    "bell benz bhabha bhaskara blackwell bohr booth borg bose boyd brahmagupta brattain brown carson cerf chandrasekhar "
    "chaplygin chatelet chatterjee chebyshev clarke cohen curie darwin davinci dijkstra dirac driscoll dubinsky easley "
    "edison einstein elion engelbart euclid euler faraday feistel fermat fermi feynman franklin galileo gates gauss "
    "germain goldberg goldstine golick goodall hamilton hawking heisenberg hermann hodgkin hoover hopper hypatia "
    "jackson jang jennings jepsen johnson joliot jones kalam kapitsa keller kepler khorana kilby kirch knuth "
    "kowalevski lalande lamarr lamport leakey leavitt lewin lichterman liskov lovelace lumiere mahavira mayer mccarthy "
    "mcclintock mclean mcnulty meitner mendel mendeleev minsky mirzakhani moore morse murdock napier nash neumann "
    "newton nightingale nobel noether northcutt noyce panini pare pascal pasteur payne perlman pike poincare ptolemy "
    "raman ramanujan ride ritchie roentgen rosalind rubin saha sammet shamir shannon shaw shirley shockley sinoussi "
    "snyder spence stonebraker sutherland swanson swartz tesla thompson torvalds turing varahamihira villani "
    "volhard wescoff wiles williams wilson wing wozniak wright yalow yonath"
).split()


def new_id() -> str:
    return secrets.token_hex(32)


def short(identifier: str) -> str:
    return identifier.split(":", 1)[-1][:12]


def validate_name(name: str) -> str:
    """The name without its leading '/', or InvalidParameter with Docker's message."""
    bare = name[1:] if name.startswith("/") else name
    if not NAME.match(bare):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return bare


def random_name(taken: set[str]) -> str:
    for attempt in range(100):
        name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}"
        if attempt > 10:
            name += str(secrets.randbelow(10))
        if name not in taken:
            return name
    return f"{secrets.choice(ADJECTIVES)}_{secrets.token_hex(4)}"
