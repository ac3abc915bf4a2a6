#!/usr/bin/env python3
"""Generate servebench's bundled request corpus, ``data/texts.csv``.

Every text is composed by this script from the hand-written building blocks below (templates,
openers, products, aspects, opinion clauses per sentiment, hedges, emojis, typos); nothing is
downloaded or copied from a third-party dataset, and all brand names and handles are invented.
The generator is seeded, so running it again reproduces the committed file byte for byte.

Usage:
    python data/make_corpus.py            # (re)write data/texts.csv
    python data/make_corpus.py --check    # exit 1 if data/texts.csv differs from a fresh run
    python data/make_corpus.py --stats    # print the markdown statistics used in data/README.md
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

SEED = 20250611
LABELS = ("negative", "neutral", "positive")
# Roughly balanced, not exactly: real traffic is never perfectly even.
TARGET_PER_LABEL = {"negative": 520, "neutral": 480, "positive": 520}
MIN_WORDS, MAX_WORDS = 3, 80
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "texts.csv"

# The building blocks are laid out by hand for readability; keep the formatter away from them.
# fmt: off

# Share of each genre within a label (the generator fills these quotas, then shuffles).
GENRE_WEIGHTS = {
    "negative": {"product": 28, "tweet": 20, "support": 15, "app": 12, "place": 14,
                 "forum": 6, "short": 5},
    "neutral": {"product": 18, "tweet": 17, "support": 17, "app": 9, "place": 10,
                "forum": 8, "question": 16, "short": 5},
    "positive": {"product": 30, "tweet": 21, "support": 8, "app": 12, "place": 17,
                 "forum": 6, "short": 6},
}

# ---------------------------------------------------------------------------------------------
# Small vocabularies used by the slots ({price}, {person}, ...)
# ---------------------------------------------------------------------------------------------

PRICE_TIERS = {
    "low": ["$9", "$12", "$14.99", "$19", "under $20", "£8", "€15", "$22", "10 bucks"],
    "mid": ["$35", "$49", "$59.99", "$75", "£40", "€65", "40 bucks", "$89", "$110"],
    "high": ["$249", "$399", "$179", "£320", "€550", "almost $700", "$899", "$1,100"],
}
DURATIONS = ["two weeks", "a month", "three months", "about a year", "six weeks", "10 days",
             "a couple of months", "almost two years", "a week", "5 months", "half a year"]
PERSONS = ["my daughter", "my husband", "my wife", "my mom", "my dad", "my roommate",
           "my partner", "my 9 year old", "my son", "a coworker", "my sister", "my fiancée",
           "my grandpa", "my best friend", "my teenager"]
NAMES = ["Priya", "Marcus", "Zoë", "José", "Aiyana", "Tom", "Chloé", "Kenji", "Fatima",
         "Dmitri", "Sam", "Renée", "Lucas", "Nadia", "Omar", "Beth", "Andrés", "Grace"]
MY_NAMES = ["Anna", "Raj", "Carmen", "Ben", "Léa", "Mike", "Yuki", "Hannah", "Tariq", "Elif",
            "Jon", "Martina", "Kwame", "Siobhán"]
# Invented product brands (the "{item} from {brand}" of tweets and forum posts).
PRODUCT_BRANDS = ["Voltique", "TrailByte", "Kettlr", "Northpeak", "Pixelnest", "Solvio",
                  "Brightwave", "Fennick", "Orla & Finch", "Mossgrove", "Quillo"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CITIES = ["Montréal", "Denver", "Leeds", "São Paulo", "Austin", "Zürich", "Dublin", "Kraków",
          "Portland", "Malmö", "Toronto", "Lyon", "Auckland", "Chicago"]
MINUTES = ["20 minutes", "45 minutes", "an hour", "over an hour", "40 minutes", "two hours",
           "90 minutes", "half an hour"]
SMALL_NUMBERS = ["two", "three", "four", "five", "2", "3", "4", "6"]
# Empty strings make the intensifier optional.
INTENSIFIERS = ["really", "super", "very", "incredibly", "seriously", "pretty", "so", "genuinely",
                "", "", ""]
OCCASIONS = ["a birthday dinner", "date night", "a quick lunch", "brunch with friends",
             "our anniversary", "a work lunch", "a late dinner after a concert",
             "a family dinner", "takeout on a rainy night", "a friend's going-away party"]
TRIP_REASONS = ["our anniversary", "a friend's wedding", "a conference", "a long weekend",
                "a family visit", "a concert in town", "a stopover", "my sister's graduation"]

EMOJIS = {
    "positive": ["😍", "🙌", "👍", "❤️", "😊", "🔥", "✨", "🥳", "💯", "😁", "🙏"],
    "negative": ["😡", "😤", "👎", "🙄", "😩", "💔", "🤬", "😒", "😞", "🤦"],
    "neutral": ["🤔", "🤷", "👀", "📦", "☕", "🙂"],
}
HASHTAGS = {
    "positive": ["#happycustomer", "#worthit", "#loveit", "#smallwins", "#treatyourself",
                 "#goodvibes", "#recommend", "#fridayfeeling"],
    "negative": ["#fail", "#customerservice", "#neveragain", "#mondays", "#ripoff",
                 "#badservice", "#frustrated", "#stillwaiting"],
    "neutral": ["#question", "#help", "#shopping", "#techtalk", "#justwondering", "#commute"],
}

# ---------------------------------------------------------------------------------------------
# Products: domains, items (noun, is_plural) and aspect clauses per sentiment
# ---------------------------------------------------------------------------------------------

# Clause placeholders: {it}/{It} they, {itis} they're, {is} are, {was} were, {s}/{es} verb
# endings, {obj} them, {one} ones, {this}/{This} these, {item} the bare noun, {very} an
# optional intensifier. A clause written "noun1,noun2::text" only fits those items.
PRODUCT_DOMAINS: dict[str, dict] = {
    "headphones": {
        "price": "mid",
        "items": [("earbuds", True), ("wireless earbuds", True), ("headphones", True),
                  ("noise-cancelling headphones", True), ("over-ear headphones", True),
                  ("gaming headset", False)],
        "aspects": {
            "sound": {
                "positive": ["the sound is {very} clear, even with the volume cranked up",
                             "the bass is punchy without drowning out the vocals",
                             "calls and podcasts sound crisp",
                             "I'm hearing details in old songs I never noticed before",
                             "the noise cancelling wipes out the hum of my open-plan office"],
                "negative": ["the sound is tinny and the bass is basically nonexistent",
                             "there's a constant hiss whenever nothing is playing",
                             "the noise cancelling barely does anything on the train",
                             "the left side is noticeably quieter than the right",
                             "people on calls say I sound like I'm underwater"],
                "neutral": ["the sound is about what you'd expect at this price",
                            "noise cancelling is decent but not class-leading",
                            "the sound is fine for podcasts, I haven't tested music much"],
            },
            "battery": {
                "positive": ["the battery easily lasts my whole work week",
                             "I get about {n} days out of a single charge",
                             "a 10 minute charge gives me a couple of hours of music"],
                "negative": ["the battery dies after barely two hours",
                             "the battery drains overnight even when I'm not using {obj}",
                             "charging takes forever and the case gets hot"],
                "neutral": ["battery life is close to what the listing claims",
                            "a full charge takes around two hours"],
            },
            "comfort": {
                "positive": ["{itis} comfy enough to wear for a whole flight",
                             "earbuds,wireless earbuds::they stay put even when I'm running",
                             "I honestly forget I'm wearing {obj}"],
                "negative": ["my ears start aching after about 30 minutes",
                             "earbuds,wireless earbuds::they keep slipping out whenever I turn my head",
                             "the headband pinches like crazy after an hour"],
                "neutral": ["the fit is snug, might loosen up with time",
                            "earbuds,wireless earbuds::the box includes three sizes of ear tips"],
            },
            "connection": {
                "positive": ["pairing took literally five seconds",
                             "{it} switch{es} between my phone and laptop without any fuss"],
                "negative": ["the bluetooth drops every time my phone goes in my pocket",
                             "{it} flat out refuse{s} to pair with my laptop",
                             "there's a noticeable audio delay when I watch videos"],
                "neutral": ["pairing works, but you have to hold the button for a while",
                            "{it} connect{s} fine to my phone, haven't tried the laptop yet"],
            },
        },
    },
    "speakers": {
        "price": "mid",
        "items": [("bluetooth speaker", False), ("soundbar", False), ("smart speaker", False),
                  ("shower speaker", False)],
        "aspects": {
            "sound": {
                "positive": ["it fills the whole living room without distorting",
                             "dialogue in movies is finally clear without cranking the volume",
                             "the sound is {very} rich for something this small"],
                "negative": ["it distorts badly at anything above half volume",
                             "voices sound muffled no matter what setting I use",
                             "there's a buzzing sound even when nothing is playing"],
                "neutral": ["the sound is fine for background music, not for parties"],
            },
            "setup": {
                "positive": ["setup took two minutes, the app walked me through it",
                             "it paired with the TV on the first try"],
                "negative": ["it disconnects from the wifi every single night",
                             "the app kept failing at the last setup step"],
                "neutral": ["you need the app and an account to set it up"],
            },
            "battery": {
                "positive": ["bluetooth speaker,shower speaker::the battery lasted a whole weekend at the beach"],
                "negative": ["bluetooth speaker,shower speaker::the battery is dead after a couple of hours"],
                "neutral": ["bluetooth speaker,shower speaker::it charges over USB-C, about three hours to full"],
            },
        },
    },
    "power": {
        "price": "low",
        "items": [("power bank", False), ("wall charger", False), ("charging cable", False),
                  ("wireless charging pad", False), ("car charger", False),
                  ("USB-C cables", True)],
        "aspects": {
            "charging": {
                "positive": ["it charges my phone from 10 to 80 percent in about half an hour",
                             "power bank,wall charger,USB-C cables,charging cable::{it} even fast-charge{s} my laptop, which I didn't expect",
                             "power bank::I can top up my phone three times before it needs a recharge"],
                "negative": ["it charges slower than the cheap one that came with my phone",
                             "my phone keeps saying 'accessory not supported'",
                             "{it} stop{s} charging if the phone moves even a little"],
                "neutral": ["charging speed is normal, nothing faster than my old one",
                            "power bank,wall charger,car charger::it only fast-charges one device at a time"],
            },
            "durability": {
                "positive": ["{it} still work{s} perfectly after months of being thrown in my bag",
                             "charging cable,USB-C cables::the braided cable feels like it'll outlive my phone"],
                "negative": ["charging cable,USB-C cables::the connector started fraying after {duration}",
                             "{it} stopped working completely after {duration}",
                             "power bank,wall charger,car charger::one of the ports already feels loose"],
                "neutral": ["too early to say how {it} hold{s} up long-term"],
            },
            "heat": {
                "positive": ["{it} barely get{s} warm, even when charging two things",
                             "car charger::no overheating at all, even on the dashboard in summer"],
                "negative": ["{it} get{s} so hot I'm honestly worried about leaving {obj} plugged in",
                             "it gets hot enough that my phone pauses charging"],
                "neutral": ["{it} get{s} a bit warm while charging, which I think is normal"],
            },
        },
    },
    "computer": {
        "price": "high",
        "items": [("laptop", False), ("tablet", False), ("chromebook", False),
                  ("gaming laptop", False), ("2-in-1 laptop", False)],
        "aspects": {
            "performance": {
                "positive": ["it boots in seconds and never stutters, even with 40 tabs open",
                             "it handles photo editing without breaking a sweat",
                             "everything feels snappy compared to my old one"],
                "negative": ["it freezes at least once a day and I have to force restart",
                             "the fans scream the moment I join a video call",
                             "it lags badly with more than a few apps open"],
                "neutral": ["performance is fine for email and browsing, which is all I need",
                            "it handles office work, but I wouldn't edit video on it"],
            },
            "display": {
                "positive": ["the screen is {very} sharp and the colors pop",
                             "it's bright enough to work outside on the balcony"],
                "negative": ["the screen has a dead pixel right in the middle",
                             "the screen is so reflective I can see myself more than my work"],
                "neutral": ["the screen is a standard 1080p panel, nothing special"],
            },
            "battery": {
                "positive": ["I get a full workday on one charge with battery to spare"],
                "negative": ["the battery barely lasts three hours, nowhere near the advertised ten"],
                "neutral": ["battery life is around six hours with normal use"],
            },
            "build": {
                "positive": ["it's light enough that I carry it everywhere",
                             "the keyboard is comfortable for long typing sessions"],
                "negative": ["the hinge feels flimsy and wobbles when I type",
                             "the trackpad randomly stops responding"],
                "neutral": ["it's a bit heavier than I expected, around 2 kg",
                            "the charger is a bulky brick, not USB-C"],
            },
        },
    },
    "peripheral": {
        "price": "mid",
        "items": [("monitor", False), ("mechanical keyboard", False), ("wireless mouse", False),
                  ("webcam", False), ("USB microphone", False), ("printer", False)],
        "aspects": {
            "use": {
                "positive": ["monitor::text looks crisp and the colors are accurate out of the box",
                             "mechanical keyboard::the keys have a {very} satisfying click",
                             "wireless mouse::the tracking is smooth and precise on any surface",
                             "webcam::the picture is sharp even in my dim home office",
                             "USB microphone::my coworkers asked if I'd started a podcast",
                             "printer::it prints fast and hasn't jammed once",
                             "it does exactly what I need, every day, no fuss"],
                "negative": ["monitor::there's obvious backlight bleed in all four corners",
                             "mechanical keyboard::the space bar already rattles",
                             "wireless mouse::the scroll wheel skips constantly",
                             "webcam::the image is grainy and the autofocus hunts nonstop",
                             "USB microphone::it picks up every keyboard click and none of my voice",
                             "printer::it jams on every other page and the ink runs out in a week",
                             "it randomly disconnects a few times a day"],
                "neutral": ["monitor::the stand only tilts, there's no height adjustment",
                            "mechanical keyboard::the keys are louder than I expected, might bother some people",
                            "webcam::the picture is fine in daylight, grainy at night",
                            "printer::it only does black and white, which is all I need",
                            "it works, but you need the companion software to change settings"],
            },
            "setup": {
                "positive": ["setup was plug and play, no drivers needed",
                             "it worked the moment I plugged it in"],
                "negative": ["it took three reinstalls before the drivers would work",
                             "the software it requires is bloated and full of popups"],
                "neutral": ["you have to install their software to change any settings"],
            },
        },
    },
    "kitchen": {
        "price": "mid",
        "items": [("blender", False), ("air fryer", False), ("coffee maker", False),
                  ("electric kettle", False), ("toaster", False), ("rice cooker", False),
                  ("stand mixer", False), ("espresso machine", False)],
        "aspects": {
            "results": {
                "positive": ["everything I've made in it so far has turned out great",
                             "coffee maker,electric kettle,toaster,espresso machine,blender::it's made my mornings so much easier",
                             "air fryer::the fries come out crispy without a drop of oil",
                             "espresso machine,coffee maker::the coffee is better than my local café's",
                             "blender::it crushes ice in seconds",
                             "rice cooker::the rice comes out perfect every single time"],
                "negative": ["results are so inconsistent, half the time it's undercooked",
                             "it leaves a weird plastic taste even after several washes",
                             "it takes twice as long as the manual says",
                             "blender::it can't even handle frozen fruit without stalling",
                             "espresso machine,coffee maker::the coffee tastes burnt no matter what I do"],
                "neutral": ["it does the job, though it's not noticeably better than my old one",
                            "results depend a lot on the settings, there's a learning curve"],
            },
            "cleaning": {
                "positive": ["cleanup takes about two minutes",
                             "the removable parts go straight in the dishwasher"],
                "negative": ["it's a nightmare to clean, gunk gets stuck in every corner",
                             "air fryer,rice cooker::the nonstick coating started peeling after a month"],
                "neutral": ["the parts aren't dishwasher safe, so it's hand washing only"],
            },
            "noise": {
                "positive": ["it's quiet enough to use while the baby naps",
                             "surprisingly quiet for how powerful it is"],
                "negative": ["it's loud enough to wake up the whole house",
                             "it makes a grinding noise that gets worse every week"],
                "neutral": ["it's about as loud as any other {item}"],
            },
            "size": {
                "positive": ["it's compact and fits neatly under the cabinets"],
                "negative": ["it takes up half my counter and the cord is way too short"],
                "neutral": ["it's bigger than it looks in the photos, so measure your counter"],
            },
        },
    },
    "home": {
        "price": "mid",
        "items": [("robot vacuum", False), ("office chair", False), ("desk lamp", False),
                  ("mattress topper", False), ("humidifier", False), ("standing desk", False),
                  ("blackout curtains", True), ("weighted blanket", False)],
        "aspects": {
            "assembly": {
                "positive": ["office chair,standing desk::assembly took 15 minutes and the instructions were actually clear",
                             "setup took five minutes, straight out of the box"],
                "negative": ["office chair,standing desk::two screws were missing and the instructions were useless",
                             "office chair,standing desk::assembly took me an entire evening and a lot of swearing"],
                "neutral": ["office chair,standing desk::assembly takes about an hour and you'll want a second person",
                            "blackout curtains::they come with hooks but no rod"],
            },
            "comfort": {
                "positive": ["office chair,mattress topper,standing desk::my back pain has noticeably improved since I got {obj}",
                             "mattress topper,blackout curtains,weighted blanket,humidifier::I've been sleeping better since the first night",
                             "desk lamp,weighted blanket,blackout curtains::{it} make{s} my tiny apartment feel so much cozier"],
                "negative": ["office chair,mattress topper::it made my back worse within a week",
                             "mattress topper,office chair::it already sags in the middle",
                             "{it} smell{s} like chemicals and the smell won't go away"],
                "neutral": ["office chair,mattress topper::it's firmer than I expected, I'm still getting used to it",
                            "weighted blanket::it's heavier than I expected, takes getting used to"],
            },
            "function": {
                "positive": ["{it} do{es} exactly what {it} promise{s}, every single day",
                             "robot vacuum::it gets into corners I didn't even know were dirty",
                             "desk lamp::the light is warm and easy on the eyes at night",
                             "blackout curtains::the room is pitch black even at noon",
                             "humidifier::my sinuses are so much happier this winter"],
                "negative": ["robot vacuum::it gets stuck under the couch every single run",
                             "{it} stopped working after {duration} and the warranty is a joke",
                             "humidifier::it leaves a white film of dust on every surface",
                             "blackout curtains::light pours in around the edges",
                             "standing desk::one motor is slower so the desk lifts crooked"],
                "neutral": ["robot vacuum,humidifier::it works, but the app is needed for most of the settings",
                            "desk lamp::there are three brightness levels and no timer",
                            "blackout curtains::they block most of the light, a little leaks in at the top"],
            },
            "build": {
                "positive": ["{it} feel{s} sturdy and well made for the price"],
                "negative": ["{it} feel{s} cheap and wobbly, like {it} could snap any moment",
                             "office chair,weighted blanket,mattress topper,blackout curtains::the fabric started pilling after a few weeks"],
                "neutral": ["the build is mostly plastic, which is expected at this price"],
            },
        },
    },
    "clothing": {
        "price": "mid",
        "generic": ["value", "shipping", "support"],
        "items": [("running shoes", True), ("rain jacket", False), ("jeans", True),
                  ("hoodie", False), ("hiking boots", True), ("winter coat", False),
                  ("leggings", True), ("wool socks", True), ("sneakers", True)],
        "aspects": {
            "fit": {
                "positive": ["{it} fit{s} perfectly, true to size",
                             "{it} fit{s} like {it} {was} made for me",
                             "rain jacket,hoodie,winter coat::the fit is spot on, even in the shoulders"],
                "negative": ["{it} run{s} at least two sizes small",
                             "the sizing chart is completely wrong",
                             "jeans,leggings::they're huge in the waist and tight everywhere else"],
                "neutral": ["{it} run{s} slightly large, so maybe size down",
                            "running shoes,hiking boots,sneakers,jeans::the fit is roomier than my last pair"],
            },
            "material": {
                "positive": ["the fabric is soft and feels expensive",
                             "rain jacket,hiking boots,winter coat::{it} kept me completely dry in a downpour",
                             "hoodie,winter coat,wool socks::{itis} {very} warm without being bulky"],
                "negative": ["jeans,leggings,hoodie::the material is thin and see-through",
                             "{it} shrank two sizes after one wash",
                             "the stitching came apart after {duration}"],
                "neutral": ["the material is thinner than I expected but seems fine so far"],
            },
            "comfort": {
                "positive": ["running shoes,hiking boots,sneakers,wool socks::I walked 20,000 steps in {obj} on day one with zero blisters",
                             "{itis} comfy enough to wear all day"],
                "negative": ["running shoes,hiking boots,sneakers::I got blisters within an hour",
                             "{itis} stiff and uncomfortable even after weeks"],
                "neutral": ["running shoes,hiking boots,sneakers::{it} needed a few days of breaking in",
                            "{itis} comfortable enough, nothing special"],
            },
            "look": {
                "positive": ["the color is exactly like the photos",
                             "I've gotten so many compliments on {obj}"],
                "negative": ["the color looks nothing like the pictures",
                             "the color faded after two washes"],
                "neutral": ["the color is a little darker than on the website"],
            },
        },
    },
    "skincare": {
        "price": "low",
        "generic": ["value", "shipping", "support"],
        "items": [("moisturizer", False), ("sunscreen", False), ("face serum", False),
                  ("shampoo", False), ("conditioner", False), ("body wash", False),
                  ("lip balm", False), ("night cream", False)],
        "aspects": {
            "effect": {
                "positive": ["moisturizer,face serum,night cream,body wash::my skin has never felt this soft",
                             "moisturizer,night cream,face serum::my dry patches cleared up within a week",
                             "shampoo,conditioner::my hair is shinier and way less frizzy",
                             "lip balm::my lips finally stopped cracking",
                             "sunscreen::I spent a whole day at the beach and didn't burn"],
                "negative": ["moisturizer,face serum,night cream,sunscreen::it broke me out within two days",
                             "it left my skin red and itchy",
                             "shampoo,conditioner::my hair feels greasy by noon when I use it",
                             "sunscreen::I still got burned after reapplying twice"],
                "neutral": ["I haven't noticed much difference yet, good or bad"],
            },
            "texture": {
                "positive": ["it absorbs fast and doesn't leave a greasy film",
                             "a tiny amount goes a long way"],
                "negative": ["moisturizer,face serum,night cream,sunscreen::it's sticky and pills under makeup",
                             "sunscreen::it leaves a white cast no matter how much I rub it in",
                             "shampoo,body wash,conditioner::it barely lathers, I use half the bottle each time"],
                "neutral": ["the texture is on the thicker side"],
            },
            "scent": {
                "positive": ["the scent is light and fresh, not overpowering"],
                "negative": ["the fragrance is so strong it gives me a headache"],
                "neutral": ["it's almost unscented, maybe a faint citrus smell"],
            },
            "packaging": {
                "positive": ["moisturizer,face serum,shampoo,conditioner,body wash::the pump dispenses exactly the right amount",
                             "it's travel sized, so it lives in my bag now"],
                "negative": ["moisturizer,face serum,shampoo,conditioner,body wash::the pump broke and half the bottle leaked in the box",
                             "the container is half air, I'm running out already"],
                "neutral": ["it's smaller than I expected for the price"],
            },
        },
    },
    "wearable": {
        "price": "high",
        "items": [("smartwatch", False), ("fitness tracker", False), ("running watch", False),
                  ("heart rate strap", False)],
        "aspects": {
            "tracking": {
                "positive": ["heart rate tracking matches my treadmill almost exactly",
                             "smartwatch,fitness tracker::the sleep tracking actually helped me fix my bedtime",
                             "smartwatch,running watch::GPS locks on within seconds, even downtown"],
                "negative": ["smartwatch,fitness tracker::it counted 3,000 steps while I was driving",
                             "the heart rate readings are all over the place",
                             "smartwatch,running watch::GPS drifts so badly my runs look like scribbles"],
                "neutral": ["the tracking seems roughly accurate, I haven't compared it closely"],
            },
            "battery": {
                "positive": ["the battery lasts a full week even with daily workouts"],
                "negative": ["smartwatch,fitness tracker,running watch::it barely makes it through a single day",
                             "the battery went from five days to one after an update"],
                "neutral": ["I charge it every three days or so"],
            },
            "app": {
                "positive": ["the companion app is clean and syncs instantly"],
                "negative": ["the companion app loses my data every couple of weeks",
                             "half the features are locked behind a monthly subscription"],
                "neutral": ["you need the companion app for most settings"],
            },
            "strap": {
                "positive": ["the strap is comfy enough to sleep in"],
                "negative": ["the strap gave me a rash after a few days"],
                "neutral": ["the strap is a standard size, so it's easy to swap"],
            },
        },
    },
    "gear": {
        "price": "low",
        "generic": ["value", "shipping", "support"],
        "items": [("yoga mat", False), ("water bottle", False), ("backpack", False),
                  ("camping tent", False), ("resistance bands", True), ("sleeping bag", False),
                  ("lunch box", False)],
        "aspects": {
            "durability": {
                "positive": ["camping tent,sleeping bag,backpack::it survived a whole summer of camping trips",
                             "{it} still look{s} brand new after months of daily use"],
                "negative": ["backpack,sleeping bag,camping tent::one of the zippers broke on the first trip",
                             "water bottle,lunch box::it started leaking after {duration}",
                             "resistance bands::one of them snapped mid-workout and nearly hit my face",
                             "yoga mat::it's already flaking after a few weeks"],
                "neutral": ["I've only used {obj} a handful of times, so can't judge durability yet"],
            },
            "use": {
                "positive": ["water bottle::it keeps my water ice cold all day",
                             "sleeping bag,camping tent::it packs down small and weighs almost nothing",
                             "yoga mat::the grip is great, no slipping even in hot yoga",
                             "lunch box::everything stays separate and nothing leaks into my bag",
                             "resistance bands::they replaced half the equipment at my gym",
                             "backpack::my laptop, gym clothes and lunch all fit with room to spare"],
                "negative": ["yoga mat,resistance bands::{it} smell{s} like a tire and the smell won't fade",
                             "camping tent::it took two of us an hour to figure out the poles",
                             "{itis} way heavier than the listing suggests",
                             "sleeping bag::I froze at 10 degrees even though it's rated for zero"],
                "neutral": ["{itis} a bit heavier than my old {one}, but roomier",
                            "yoga mat::it's thinner than my old one, fine on carpet"],
            },
            "design": {
                "positive": ["backpack,lunch box::there are pockets exactly where you need them",
                             "the design is simple and actually thought through"],
                "negative": ["water bottle,lunch box::the lid is impossible to open with one hand",
                             "backpack::the straps dig into my shoulders"],
                "neutral": ["it comes in four colors, I went with the grey"],
            },
        },
    },
    "books": {
        "price": "low",
        "generic": ["value", "shipping", "support"],
        "items": [("novel", False), ("cookbook", False), ("picture book", False),
                  ("thriller", False), ("audiobook", False), ("memoir", False),
                  ("study guide", False)],
        "aspects": {
            "content": {
                "positive": ["novel,thriller,memoir,audiobook::I couldn't put it down and finished it in two nights",
                             "cookbook::every recipe I've tried so far has been a hit",
                             "picture book::{person} asks for it every single night",
                             "thriller,novel::the twist in the last chapter genuinely shocked me",
                             "study guide::I passed the exam on my first try"],
                "negative": ["novel,thriller,audiobook::the plot falls apart completely in the second half",
                             "cookbook::half the recipes call for ingredients I can't find anywhere",
                             "novel,thriller,memoir::the ending felt rushed and made no sense",
                             "memoir,study guide,novel::it's 400 pages that could've been a blog post",
                             "picture book::the story is so short it's over before my kid sits down",
                             "study guide::the practice questions don't match the real exam at all"],
                "neutral": ["novel,thriller::it's a fairly standard entry in the genre",
                            "the first half is slow, the second half picks up",
                            "cookbook::most of the recipes are variations on the same few dishes",
                            "study guide::it covers the basics but you'll need other material"],
            },
            "writing": {
                "positive": ["the writing is {very} funny and sharp",
                             "audiobook::the narrator's voice is perfect for the story"],
                "negative": ["the writing is clunky and full of clichés",
                             "audiobook::the narrator reads in a flat monotone"],
                "neutral": ["the writing is simple, which some people will like more than others"],
            },
            "edition": {
                "positive": ["cookbook,picture book::the photos and layout are gorgeous"],
                "negative": ["novel,memoir,thriller,cookbook::the print is tiny and the binding cracked on day one",
                             "novel,thriller,memoir::pages 80 to 112 were printed twice and some were missing"],
                "neutral": ["novel,memoir,thriller::the paperback has smaller print than the hardcover"],
            },
        },
    },
    "toys": {
        "price": "low",
        "generic": ["value", "shipping", "support"],
        "items": [("board game", False), ("jigsaw puzzle", False), ("building set", False),
                  ("remote control car", False), ("plush toy", False), ("kids' scooter", False),
                  ("craft kit", False)],
        "aspects": {
            "fun": {
                "positive": ["{person} has played with it every day since it arrived",
                             "board game::it's become our go-to family game night pick",
                             "it kept the kids busy for a whole rainy weekend"],
                "negative": ["{person} got bored of it in ten minutes",
                             "board game::the rules are so confusing we gave up halfway",
                             "it's way too hard for the age range on the box"],
                "neutral": ["{person} likes it, though it's not a favorite"],
            },
            "quality": {
                "positive": ["jigsaw puzzle,building set,board game::the pieces are chunky and well made",
                             "it's survived being dropped down the stairs more than once"],
                "negative": ["jigsaw puzzle,building set,board game,craft kit::three pieces were missing straight out of the box",
                             "remote control car,kids' scooter::a wheel snapped off on the second day",
                             "plush toy::an eye came loose after one wash",
                             "the paint started chipping almost immediately"],
                "neutral": ["jigsaw puzzle,building set,board game::the pieces are smaller than I expected, so not for toddlers",
                            "remote control car,kids' scooter,plush toy::it's sturdier than it looks, but not indestructible"],
            },
            "instructions": {
                "positive": ["building set,craft kit::the instructions are clear enough for a 7 year old"],
                "negative": ["building set,craft kit,remote control car::the instructions are tiny drawings with no words"],
                "neutral": ["building set,craft kit,board game::the instructions are only available online"],
            },
        },
    },
    "pet": {
        "price": "mid",
        "generic": ["value", "shipping", "support"],
        "items": [("dog bed", False), ("cat tree", False), ("dog harness", False),
                  ("automatic feeder", False), ("chew toy", False), ("litter box", False),
                  ("pet carrier", False)],
        "aspects": {
            "pet": {
                "positive": ["dog bed::my dog claimed it the minute I took it out of the box",
                             "cat tree::the cats fight over who gets the top level",
                             "dog bed,pet carrier::our anxious rescue finally settles down in it",
                             "dog harness::no more pulling on walks, my shoulder thanks you",
                             "automatic feeder::the cat finally stopped waking me at 5am",
                             "chew toy::it's the only toy that's lasted more than a day",
                             "litter box::the smell is basically gone"],
                "negative": ["dog bed,chew toy::my dog destroyed it in under an hour",
                             "cat tree,litter box,pet carrier::the cat won't go near it, not even with treats",
                             "dog harness::it rubbed my puppy raw under the front legs",
                             "automatic feeder::it jammed and skipped two meals while I was at work"],
                "neutral": ["cat tree,pet carrier,litter box::the cat ignores it most days, sometimes naps near it",
                            "dog harness,dog bed,pet carrier::it's smaller than I expected, fine for a medium dog",
                            "my dog seems fine with it, no strong reaction either way"],
            },
            "quality": {
                "positive": ["dog bed,chew toy,dog harness::it's held up to a very enthusiastic 40 kg lab",
                             "dog bed::the cover comes off and washes easily",
                             "{it} feel{s} sturdy and well made"],
                "negative": ["the stitching gave way in the first week",
                             "it feels cheap, I doubt it'll last the year"],
                "neutral": ["it's mostly plastic, but seems sturdy enough"],
            },
        },
    },
}

# Aspects that fit any product; one or two are mixed in with the domain's own.
GENERIC_ASPECTS = {
    "value": {
        "positive": ["{itis} honestly a steal for {price}", "it's worth every penny",
                     "{itis} just as good as the name brands at half the price", "I'd happily have paid more"],
        "negative": ["{itis} way overpriced for what you get",
                     "not worth {price}, not even close",
                     "you can find better for half the price", "cheaper ones I've owned lasted longer"],
        "neutral": ["{it} {was} {price}, which seems standard",
                    "the price is about the same as everything else in this range", "it's mid-range price-wise, no surprises"],
    },
    "shipping": {
        "positive": ["{it} arrived two days early and perfectly packed",
                     "shipping was fast, ordered {weekday} and had {obj} by {weekday2}", "{it} came in tidy packaging with no plastic waste"],
        "negative": ["{it} took almost three weeks to arrive",
                     "the box showed up crushed and the seal was broken",
                     "{it} arrived used, with someone else's return label inside", "tracking said delivered a week before {it} actually showed up"],
        "neutral": ["{it} arrived on the date they said", "shipping took about a week",
                    "{it} came in a plain brown box with a one-page manual", "tracking updates were slow, but {it} showed up on time"],
    },
    "support": {
        "positive": ["when I had a question the seller answered within an hour",
                     "the seller sent a replacement part in two days, no questions asked", "the company answered my email the same day"],
        "negative": ["the seller stopped answering once I asked about a return",
                     "they want me to pay return shipping for their defect", "customer service just sends copy-paste replies"],
        "neutral": ["the warranty is one year and you have to register online", "the manual points you to a website for most questions"],
    },
    "build": {
        "positive": ["{it} feel{s} solid and well made", "the build quality is excellent", "{it} look{s} more expensive than {it} {is}"],
        "negative": ["{it} feel{s} cheap and flimsy", "the plastic creaks when you pick {obj} up", "there's already a crack near the seam"],
        "neutral": ["{it} feel{s} lighter than I thought", "the build is okay for the price", "nothing fancy, but nothing has broken so far"],
    },
}

PRODUCT_OPENERS = ["Bought {this} for {person}.", "Got {this} on sale for {price}.",
                   "I've had {this} for {duration} now.", "Ordered {this} after my old {one} died.",
                   "Picked up {this} as a gift for {person}.", "Been using {this} daily for {duration}.",
                   "Finally replaced my old {item}.", "Bought {this} on a whim.",
                   "I did a lot of research before buying {this}.",
                   "Second {item} I've bought from this brand.", "Update after {duration}:",
                   "Needed {this} for a trip.", "Ordered {this} on {weekday}, arrived {weekday2}.",
                   "My sister recommended {this}.", "Paid {price} for {this}.",
                   "Bought {this} to replace one that lasted ten years."]
# Short asides that make longer reviews read like a person talking, not a spec sheet.
REVIEW_ASIDES = {
    "positive": ["I was skeptical at first.", "Honestly didn't expect much for the price.",
                 "I read way too many reviews before buying.", "This is my first review ever.",
                 "I almost went with a pricier one, glad I didn't."],
    "negative": ["I really wanted to like {obj}.", "I gave {obj} a fair chance.",
                 "The reviews here made me hopeful.", "I waited a month before writing this.",
                 "I don't usually leave bad reviews."],
    "neutral": ["I've gone back and forth on this.", "Hard to rate, honestly.",
                "Writing this for anyone still deciding.", "Some context: I'm not picky."],
}
PRODUCT_TITLES = {
    "positive": ["Exactly what I needed.", "Love {obj}!", "Great little {item}.",
                 "Pleasantly surprised.", "Better than expected!", "So happy with {this}.",
                 "Five stars.", "Wow.", "Best purchase this year."],
    "negative": ["Disappointed.", "Do not buy.", "Save your money.", "Returned.",
                 "What a letdown.", "Not as advertised.", "Avoid.", "One star.", "Ugh."],
    "neutral": ["It's okay.", "Does the job.", "Mixed feelings.", "Average.",
                "Three stars.", "Fine for the price.", "Not bad, not great.", "Meh."],
}
PRODUCT_CLOSERS = {
    "positive": ["Would buy again.", "Highly recommend.", "Already ordered a second one.",
                 "5 stars from me.", "No regrets at all.", "Worth it.", "10/10.",
                 "Can't recommend {obj} enough.", "Very happy customer.", "★★★★★"],
    "negative": ["Returning {obj}.", "Save your money.", "Never again.", "Avoid.",
                 "One star and that's generous.", "Requesting a refund.", "Really disappointed.",
                 "Zero stars if I could.", "Back in the box {it} go{es}.", "★☆☆☆☆"],
    "neutral": ["Three stars.", "It does the job.", "Might update after a few more weeks.",
                "Fine for the price.", "No strong feelings either way.", "3/5.",
                "Will see how {it} hold{s} up.", "Decide for yourself.", "★★★☆☆"],
}
# Joins a mixed opinion into one sentence, e.g. a positive review with a minor complaint.
MINOR_COMPLAINT = ["My only complaint is that {clause}.", "Only downside: {clause}.",
                   "If I had to nitpick, {clause}.", "The one thing I'd change: {clause}.",
                   "That said, {clause}, but it's a small thing."]
GRUDGING_PRAISE = ["Sure, {clause}, but that doesn't make up for the rest.",
                   "I'll give it this: {clause}. Still not worth it.",
                   "{Clause}, and that's about the only good thing.", "The only upside: {clause}.", "Credit where it's due, {clause}. Doesn't save it.", "{Clause}, but who cares when the rest is this bad."]
MIXED_JOIN = ["{Pos}, but {neg}.", "On one hand {pos}. On the other, {neg}.",
              "{Neg}. To be fair, {pos}.", "Pros: {pos}. Cons: {neg}.",
              "{Pos}. Unfortunately {neg}."]
MIXED_VERDICT = ["So it's a wash.", "Overall it's fine.", "Kind of a mixed bag.",
                 "Average overall.", "Not sure yet if I'd buy it again.", "Three stars.",
                 "Can't decide how I feel about it.", "It evens out, I guess.", "Hard to say if it's worth it.", "I'm on the fence.", "Middle of the road overall.", "Fine, but no wow factor."]
CONNECTORS = {
    "positive": ["Also, ", "Plus, ", "And ", "", "", "", "On top of that, ", "Bonus: ",
                 "Oh, and ", "Honestly, "],
    "negative": ["Also, ", "And ", "", "", "", "On top of that, ", "Worse, ", "Oh, and ",
                 "To top it off, ", "Honestly, "],
    "neutral": ["Also, ", "", "", "", "For what it's worth, ", "FYI ", "As for the rest, "],
}

# ---------------------------------------------------------------------------------------------
# Places: restaurants (with their own dishes) and hotels
# ---------------------------------------------------------------------------------------------

# Dishes are (name, is_plural) so that "the fish tacos were" agrees.
RESTAURANTS = {
    "pizza place": [("the margherita", False), ("the garlic knots", True), ("the burrata", False)],
    "ramen spot": [("the tonkotsu ramen", False), ("the gyoza", True), ("the miso ramen", False)],
    "café": [("the café au lait", False), ("the avocado toast", False),
             ("the almond croissant", False), ("the flat white", False)],
    "taco truck": [("the fish tacos", True), ("the al pastor", False), ("the elote", False)],
    "bistro": [("the mushroom risotto", False), ("the crème brûlée", False),
               ("the steak frites", False), ("the French onion soup", False)],
    "sushi bar": [("the salmon nigiri", False), ("the spicy tuna roll", False),
                  ("the omakase", False)],
    "brunch spot": [("the eggs benedict", False), ("the açaí bowl", False),
                    ("the pancakes", True), ("the huevos rancheros", True)],
    "bakery": [("the cinnamon rolls", True), ("the sourdough", False), ("the lemon tart", False),
               ("the pain au chocolat", False)],
    "steakhouse": [("the ribeye", False), ("the creamed spinach", False),
                   ("the truffle fries", True)],
    "Thai place": [("the pad thai", False), ("the green curry", False),
                   ("the mango sticky rice", False), ("the tom yum", False)],
    "diner": [("the fried chicken sandwich", False), ("the hash browns", True),
              ("the milkshake", False)],
    "noodle shop": [("the pho", False), ("the pork dumplings", True),
                    ("the dan dan noodles", True)],
    "crêperie": [("the ham and gruyère crêpe", False), ("the salted caramel crêpe", False)],
    "burger joint": [("the jalapeño burger", False), ("the sweet potato fries", True),
                     ("the veggie burger", False)],
    "trattoria": [("the carbonara", False), ("the tiramisu", False),
                  ("the veggie lasagna", False)],
    "food hall": [("the chicken shawarma", False), ("the poke bowl", False),
                  ("the falafel wrap", False)],
}
HOTELS = ["hotel", "B&B", "hostel", "resort", "motel", "guesthouse", "boutique hotel",
          "airport hotel"]
RESTAURANT_ASPECTS = {
    "food": {
        "positive": ["{dish} {dwas} {very} good, easily the best I've had in town",
                     "{dish} {dwas} spot on and came out fast, even though it was packed",
                     "every single plate was gone in minutes",
                     "{dish} alone {dis} worth the trip",
                     "{dish} tasted like something my grandma would make", "the portions are huge and everything tastes homemade"],
        "negative": ["{dish} {dwas} cold and clearly reheated",
                     "{dish} {dwas} so salty I couldn't finish",
                     "{dish} tasted like {dit} came out of a freezer bag",
                     "they got my order wrong twice",
                     "I found a hair in {dish}", "{dish} {dwas} bland and swimming in oil"],
        "neutral": ["{dish} {dwas} fine, nothing memorable",
                    "the menu is small, mostly classics",
                    "we shared {dish} and a couple of sides", "{dish} {dwas} okay, I've had better and worse"],
    },
    "service": {
        "positive": ["our server {name} was so friendly and checked on us at just the right times",
                     "the staff remembered my order from last time",
                     "they went out of their way to handle my nut allergy", "the owner came by to ask how everything was"],
        "negative": ["we waited 20 minutes before anyone even brought menus",
                     "the server rolled her eyes when we asked for water",
                     "staff were more interested in their phones than the customers", "our server forgot half our order and blamed the kitchen"],
        "neutral": ["service was quick, nothing more to say",
                    "you order at the counter and they bring it out", "service was friendly but a bit slow"],
    },
    "wait": {
        "positive": ["food came out in ten minutes even though it was packed",
                     "we walked right in, no wait at all", "takeout was ready exactly when they said"],
        "negative": ["we waited {minutes} for our food with no explanation",
                     "they lost our reservation and made us wait at the bar for an hour", "the delivery showed up an hour late and lukewarm"],
        "neutral": ["expect a short wait on weekends", "they don't take reservations", "takeout takes about 20 minutes on a {weekday}"],
    },
    "atmosphere": {
        "positive": ["the décor is gorgeous and the music isn't too loud",
                     "it's cozy, with big windows and lots of plants",
                     "perfect spot for a first date", "great playlist and a really relaxed vibe"],
        "negative": ["it was so loud we had to shout across the table",
                     "the tables were sticky and the bathroom was filthy",
                     "it smelled like old fryer oil the whole time", "it was so dark we needed our phone flashlights to read the menu"],
        "neutral": ["it's a small space with maybe ten tables",
                    "there's outdoor seating but it's next to the road", "it's a casual place, paper plates and a counter"],
    },
    "price": {
        "positive": ["prices are fair for the portion sizes",
                     "two of us ate well for under $40", "the lunch special is a steal"],
        "negative": ["$18 for a tiny portion is a joke",
                     "they added a 20% service charge without telling us", "the bill was almost double what the online menu said"],
        "neutral": ["prices are about average for the area",
                    "it's cash only, there's an ATM next door", "mains are around $20, drinks extra"],
    },
}
HOTEL_ASPECTS = {
    "room": {
        "positive": ["the room was spotless and bigger than the photos",
                     "we got a free upgrade to a room with a balcony",
                     "the bed was so comfortable I overslept twice", "the view from our room was unreal, right over the harbor"],
        "negative": ["the room smelled like smoke even though it's non-smoking",
                     "there was mold in the shower and stains on the sheets",
                     "the air conditioning rattled all night", "the room was half the size shown in the photos", "the carpet was stained and the curtains didn't close"],
        "neutral": ["the room was small but had everything we needed",
                    "the room faced the parking lot", "the room was clean, if a bit dated", "we got twin beds even though we asked for a double"],
    },
    "staff": {
        "positive": ["the front desk staff were incredibly helpful with restaurant tips",
                     "{name} at reception arranged a late checkout for us without any fuss", "the cleaning staff left extra towels and little notes every day", "the night manager got us a taxi at 4am without complaint"],
        "negative": ["the front desk was rude and acted like we were bothering them",
                     "nobody answered the phone at reception for an hour", "we asked three times for extra towels and never got them", "check-in took 45 minutes because only one person was working"],
        "neutral": ["check-in was at 3 and they stuck to it exactly", "staff were polite and efficient, nothing more to say", "reception is only staffed until 10pm"],
    },
    "location": {
        "positive": ["the location is perfect, five minutes' walk to the old town",
                     "it's right next to the train station, which made everything easy", "there's a great bakery and a metro stop right on the corner"],
        "negative": ["the area felt sketchy after dark",
                     "it's a 40 minute bus ride from anything worth seeing", "the 'beachfront' hotel is a ten minute drive from the beach"],
        "neutral": ["it's about 20 minutes from the center by tram", "it's on a busy road but close to the highway", "parking is across the street and costs $20 a night"],
    },
    "breakfast": {
        "positive": ["the breakfast buffet had fresh pastries and real café au lait",
                     "breakfast alone made the stay worth it", "the crêpes at breakfast were made fresh to order"],
        "negative": ["breakfast was powdered eggs and stale bread",
                     "they charged $25 for a breakfast that ran out by 8:30", "the coffee at breakfast tasted like dishwater"],
        "neutral": ["breakfast is extra, around $15 per person", "breakfast is a basic continental spread, served until 10"],
    },
    "noise": {
        "positive": ["it was quiet even though we were near the elevator", "thick walls and blackout curtains meant the best sleep I've had in months"],
        "negative": ["the walls are paper thin, we heard every word next door",
                     "construction started at 7am right outside our window", "a wedding party was shouting in the hallway until 3am"],
        "neutral": ["street noise is noticeable with the window open", "you can hear the trains at night, they provide earplugs"],
    },
    "wifi": {
        "positive": ["the wifi was fast enough for video calls", "wifi was free and reached every corner of the room"],
        "negative": ["the wifi cut out every few minutes, impossible to work", "they charge $15 a day for wifi that barely loads email"],
        "neutral": ["wifi is free but only in the lobby", "wifi works fine in the room, slower by the pool"],
    },
}
RESTAURANT_OPENERS = ["Came here for {occasion}.", "Went on a {weekday} night with {person}.",
                      "First time trying this {place}.", "Ordered delivery from this {place}.",
                      "Stopped by this {place} after a long day.",
                      "This {place} has been on my list for months.",
                      "Our go-to {place} for years.", "Visiting {city} and found this {place}.",
                      "Grabbed lunch here with {person}."]
HOTEL_OPENERS = ["Stayed {n} nights for a work trip.", "We booked this {place} for {trip}.",
                 "Spent a weekend at this {place} in {city}.", "Stayed here with {person}.",
                 "Booked this {place} last minute.", "Second stay at this {place}.",
                 "Booked this {place} in {city} for just one night."]
PLACE_ASIDES = {
    "positive": ["A friend had been raving about it for months.", "We weren't expecting much.",
                 "We'll be telling everyone about it."],
    "negative": ["The reviews made it sound great.", "We really wanted to like it.",
                 "I've been coming here for years, so this hurts."],
    "neutral": ["It was busy when we got there.", "We didn't have a reservation.",
                "Here's the honest rundown."],
}
PLACE_CLOSERS = {
    "positive": ["We'll definitely be back!", "Can't wait to come back.", "Highly recommend.",
                 "Already planning our next visit.", "Five stars.", "Go, you won't regret it.",
                 "A real gem.", "Worth every cent."],
    "negative": ["Won't be returning.", "Never again.", "Avoid.", "Not worth the money.",
                 "I've left better reviews for gas stations.", "Two stars, and that's for the view.",
                 "Management needs to fix this.", "So disappointing."],
    "neutral": ["Decent if you're in the area.", "Three stars.", "It's fine for a quick stop.",
                "Might try it again, might not.", "Average overall.",
                "Nothing wrong with it, nothing special either."],
}

# ---------------------------------------------------------------------------------------------
# Apps
# ---------------------------------------------------------------------------------------------

APPS = {
    "budgeting app": {
        "positive": ["I finally know where my money goes every month",
                     "it helped me pay off a credit card in six months"],
        "negative": ["it miscategorizes half my transactions",
                     "it keeps losing the connection to my bank"],
        "neutral": ["it pulls transactions from my bank once a day"],
    },
    "meditation app": {
        "positive": ["the 10 minute sessions before bed changed my sleep",
                     "the voices are calm and not cheesy at all"],
        "negative": ["every session starts with an ad for the premium plan",
                     "the same five sessions are all you get for free"],
        "neutral": ["there are short and long sessions, mostly breathing exercises"],
    },
    "photo editor": {
        "positive": ["the filters look natural instead of overdone",
                     "I edit all my photos on my phone now"],
        "negative": ["it exports everything at lower resolution without telling you",
                     "it adds a watermark unless you pay"],
        "neutral": ["most of the tools are in the paid tier"],
    },
    "language app": {
        "positive": ["I can finally order food in Portuguese without panicking",
                     "the short daily lessons actually stick"],
        "negative": ["it marks correct answers wrong because of an accent on é",
                     "the lessons get repetitive after the first unit"],
        "neutral": ["it has about 20 languages, some with more content than others"],
    },
    "fitness app": {
        "positive": ["the workout plans keep me motivated",
                     "I've run three times a week for two months thanks to it"],
        "negative": ["it lost my entire workout history after the update",
                     "the GPS tracking stops whenever the screen turns off"],
        "neutral": ["it syncs with most watches, but not all"],
    },
    "weather app": {
        "positive": ["the rain alerts are scarily accurate",
                     "the radar map is the best I've used"],
        "negative": ["it said sunny while I was standing in a thunderstorm",
                     "the widget hasn't updated in three days"],
        "neutral": ["it shows hourly forecasts for the next 48 hours"],
    },
    "note-taking app": {
        "positive": ["my notes sync instantly between laptop and phone",
                     "search finds anything, even text in photos"],
        "negative": ["it deleted a week of notes during a sync",
                     "formatting gets scrambled every time I paste something"],
        "neutral": ["it works offline, syncing happens when you reconnect"],
    },
    "banking app": {
        "positive": ["depositing checks with the camera takes seconds",
                     "instant notifications for every payment, love it"],
        "negative": ["it logs me out every time I switch apps",
                     "it wouldn't let me transfer money for three days"],
        "neutral": ["you can freeze your card from the settings page"],
    },
    "puzzle game": {
        "positive": ["it's the perfect five-minute break game",
                     "the levels get tricky without being unfair"],
        "negative": ["you can't play more than three levels without paying or watching ads",
                     "progress resets if you switch phones"],
        "neutral": ["there are about 300 levels so far"],
    },
    "recipe app": {
        "positive": ["the shopping list feature saves me so much time",
                     "weeknight dinners are so much easier now"],
        "negative": ["half the recipes are locked behind a paywall",
                     "the serving size calculator gives nonsense amounts"],
        "neutral": ["you can filter recipes by diet and cooking time"],
    },
    "habit tracker": {
        "positive": ["I've kept a 90 day streak for the first time ever",
                     "the reminders are gentle instead of annoying"],
        "negative": ["it reset my 200 day streak for no reason",
                     "reminders show up hours late"],
        "neutral": ["you can track up to five habits for free"],
    },
    "podcast app": {
        "positive": ["downloads are reliable and the sleep timer works perfectly"],
        "negative": ["it forgets where I stopped listening every single time"],
        "neutral": ["it imports subscriptions from other apps via a file"],
    },
    "calendar app": {
        "positive": ["it finally merged my work and personal calendars properly"],
        "negative": ["it duplicated every recurring event in my calendar"],
        "neutral": ["it supports shared calendars but not time zone overlays"],
    },
    "transit app": {
        "positive": ["the live arrival times are spot on", "buying tickets takes two taps"],
        "negative": ["it showed a bus that never existed and I missed my train",
                     "the ticket wouldn't load at the gate, again"],
        "neutral": ["it covers buses and trams, not the regional trains"],
    },
}
APP_ASPECTS = {
    "stability": {
        "positive": ["it hasn't crashed once in {duration}", "it's fast and stable on my old phone", "no crashes, no freezes, it just works", "it runs smoothly even on my five-year-old tablet"],
        "negative": ["it crashes every time I open it since the last update",
                     "it freezes on the loading screen half the time",
                     "it crashes as soon as I try to log in", "it force closes whenever I rotate the screen"],
        "neutral": ["it crashed once, but hasn't since", "it was buggy at launch but seems stable now", "it takes a few seconds to load on older phones"],
    },
    "design": {
        "positive": ["the new layout is so much cleaner", "dark mode finally looks right",
                     "everything is exactly where you'd expect it", "the widgets are actually useful", "it's simple enough that my mom figured it out alone"],
        "negative": ["the redesign buried every useful feature three menus deep",
                     "the buttons are tiny and I keep tapping the wrong thing", "the font is so small I need glasses to read it", "dark mode turns half the text invisible"],
        "neutral": ["the layout changed with the update, still getting used to it", "it looks a lot like every other app in this category", "there's a light and a dark theme, nothing else to customize"],
    },
    "ads": {
        "positive": ["no ads, and the free version is genuinely usable",
                     "the subscription is cheap and worth it", "a one-time purchase instead of another subscription, thank you", "the free tier has everything I need"],
        "negative": ["there's an unskippable ad every 30 seconds",
                     "they moved basic features behind a $9.99 monthly subscription",
                     "it charged me for a year after the free trial without any warning"],
        "neutral": ["there's a free version with ads or a paid version without", "premium is $4.99 a month, the free version is limited", "there's a seven day free trial for the paid features"],
    },
    "sync": {
        "positive": ["syncing between my phone and tablet is seamless", "my data moved over perfectly when I got a new phone", "it backs up automatically, I never have to think about it"],
        "negative": ["sync has been broken for weeks and support just sends a template", "my data didn't transfer to my new phone and support just shrugged", "changes on my laptop take hours to show up on my phone"],
        "neutral": ["sync needs an account, you can't use it without one", "you can export your data as a CSV file", "sync only runs on wifi unless you change the setting"],
    },
    "battery": {
        "positive": ["it barely touches my battery", "it runs in the background all day without killing my phone", "my phone doesn't even get warm using it"],
        "negative": ["it drains my battery even when it's closed",
                     "my phone gets hot whenever it's running", "it used 30 percent of my battery doing nothing"],
        "neutral": ["it uses a bit of battery in the background for notifications", "it asks for location access constantly, which you can turn off"],
    },
    "updates": {
        "positive": ["the developers actually listen and ship fixes within days",
                     "every update adds something useful", "they fixed the bug I reported in less than a week"],
        "negative": ["every update breaks something that used to work",
                     "the latest update removed the one feature I used", "the update logged me out and wiped all my settings"],
        "neutral": ["updates come out about once a month", "the changelog just says 'bug fixes' every time", "the last update mostly changed the icons"],
    },
}
APP_OPENERS = ["Been using this {app} for {duration}.", "Downloaded this {app} on a friend's tip.",
               "Switched to this {app} after my old one shut down.",
               "I use this {app} every day.", "Updated to the latest version today.",
               "Downloaded it for {person}, ended up using it myself.",
               "Long-time user here.", "Premium subscriber for a year."]
APP_ASIDES = {
    "positive": ["I don't usually write reviews.", "I've tried a lot of these.",
                 "Tried about five of these and this is the one I kept."],
    "negative": ["I used to love this app.", "I really don't like leaving bad reviews."],
    "neutral": ["Some notes for the developers.", "Mostly a heads-up for new users."],
}
APP_CLOSERS = {
    "positive": ["5 stars, well deserved.", "Keep up the great work!", "Worth the download.",
                 "Best {app} out there.", "Can't imagine my day without it.", "Love it!"],
    "negative": ["Uninstalling.", "1 star until this is fixed.", "Fix your app!",
                 "Would give zero stars if I could.", "Cancelled my subscription.",
                 "Going back to the old version."],
    "neutral": ["3 stars for now.", "Decent, could be better.", "It's fine.",
                "Will update my rating after the next version.", "It does what it says."],
}

# ---------------------------------------------------------------------------------------------
# Services (invented companies) for tweets, support messages and forum posts
# ---------------------------------------------------------------------------------------------

SERVICES = {
    "shop": {
        "brands": ["Zapcart", "Homely", "Nestora"],
        "handles": ["@ZapcartHelp", "@HomelyStore", "@NestoraHome"],
        "problems": ["my order {order} was marked as delivered but nothing arrived",
                     "the {item} I ordered arrived broken and the return form won't load",
                     "I was sent a used {item} with someone else's return label inside",
                     "my card was declined at checkout but the payment went through anyway",
                     "you cancelled my order {order} without any explanation",
                     "the refund for my returned {item} still hasn't shown up after {duration}",
                     "the replacement you sent has the exact same defect as the first one"],
        "tweet_problems": ["my order says delivered but there's nothing here",
                           "you cancelled my order without telling me",
                           "you sent me the wrong size for the third time",
                           "I've been charged twice for the same order",
                           "the tracking hasn't updated in 9 days"],
        "requests": ["can you update the delivery address on order {order}?",
                     "what's the return window for sale items?",
                     "could you tell me when the {item} will be back in stock?",
                     "does the warranty cover accidental damage?",
                     "please send me a copy of my receipt for order {order}.",
                     "can I pick up order {order} in store instead?",
                     "do you price match if the {item} drop{s} in price after I buy?"],
        "questions": ["when does the {weekday} sale start?", "do you ship to {city}?",
                      "does the student discount apply to sale items?",
                      "can I change my delivery address after ordering?", "do you price match?"],
        "praise": ["you replaced my {item} with no questions asked",
                   "the refund was already in my account the next morning",
                   "the replacement arrived faster than the original order",
                   "{name} in your chat team tracked down my lost parcel in minutes"],
        "deeds": ["replacing my broken {item} in two days", "sorting out my refund so quickly",
                  "the handwritten note in my order", "finding my lost package"],
        "waiting": ["waiting for my refund", "my package being 'out for delivery'",
                    "waiting for a replacement"],
    },
    "courier": {
        "brands": ["Parcelly", "Swiftbox"],
        "handles": ["@parcelly_us", "@SwiftboxHelp"],
        "problems": ["my parcel {order} has been 'out for delivery' for four days",
                     "your driver marked my parcel as 'nobody home' while I was sitting by the door",
                     "the parcel was left in the rain and everything inside is soaked",
                     "my package was delivered to an address two streets away"],
        "tweet_problems": ["your driver left my parcel in the rain",
                           "'attempted delivery' my foot, I was home all day",
                           "my package has been in the same depot for a week"],
        "requests": ["can I redirect parcel {order} to a pickup point?",
                     "is it possible to schedule delivery for {weekday} afternoon?",
                     "how long do you hold parcels at the depot?"],
        "questions": ["do you deliver on Sundays?", "can I leave delivery instructions in the app?"],
        "praise": ["your driver carried a 30 kg box up four flights of stairs with a smile",
                   "the parcel arrived a day earlier than promised"],
        "deeds": ["the driver who waited while I ran downstairs",
                  "getting my parcel here before the weekend"],
        "waiting": ["my package being 'out for delivery'"],
    },
    "airline": {
        "brands": ["Skyjet", "Bluecrest Air"],
        "handles": ["@SkyjetAir", "@BluecrestAir"],
        "problems": ["my flight was cancelled and nobody has contacted me about rebooking",
                     "my suitcase has been missing for {n} days",
                     "you charged me twice for seat selection",
                     "I paid for extra legroom and got put in the last row"],
        "tweet_problems": ["my flight got cancelled and the app just says 'contact support'",
                           "three hour delay and not a single update at the gate",
                           "my bag went to Lisbon, I went to {city}"],
        "requests": ["is there a fee for changing my flight date?",
                     "I need to change the name on my booking, how do I do that?",
                     "how many bags are included in the basic fare?",
                     "can I add a stroller to my booking after paying?"],
        "questions": ["are pets allowed in the cabin on domestic flights?",
                      "does the basic fare include a carry-on?"],
        "praise": ["you rebooked our cancelled flight before I even called",
                   "the crew found my kid's stuffed rabbit and mailed it back"],
        "deeds": ["the surprise upgrade on my flight", "holding the gate for our late connection"],
        "waiting": ["waiting for my lost suitcase", "waiting for a refund on a cancelled flight"],
    },
    "telecom": {
        "brands": ["Orbitel", "CloudNine Mobile"],
        "handles": ["@OrbitelCare", "@CloudNineMob"],
        "problems": ["my internet has dropped out every evening since {weekday}",
                     "the technician never showed up during the appointment window",
                     "my bill went up $15 with zero explanation",
                     "I cancelled my plan in March and you're still billing me",
                     "I've been transferred four times and nobody can tell me anything",
                     "I was promised a callback within 24 hours, that was {n} days ago"],
        "tweet_problems": ["the internet has been down since this morning",
                           "I've been on hold for {minutes}",
                           "my bill went up $15 with zero explanation",
                           "no signal in my own apartment, again"],
        "requests": ["I'm moving to {city} next month, can I transfer my plan?",
                     "could you confirm my technician appointment on {weekday} at {time}?",
                     "I'd like to add a second line to my account.",
                     "how do I download last month's invoice?",
                     "what's the difference between the basic and plus plans?"],
        "questions": ["is there an outage in {city} right now?",
                      "does the unlimited plan include roaming?"],
        "praise": ["the technician was early, tidy and explained everything",
                   "{name} sorted out my billing issue in five minutes"],
        "deeds": ["fixing my internet in under an hour", "waiving the late fee without me asking"],
        "waiting": ["no internet", "waiting for a callback", "waiting for a technician"],
    },
    "bank": {
        "brands": ["Fernhill Bank", "Mapleline Credit Union"],
        "handles": ["@FernhillBank", "@MaplelineCU"],
        "problems": ["my card was blocked while I was abroad and nobody picks up the phone",
                     "a payment I didn't make is still on my statement after two weeks",
                     "my account was locked and the verification code never arrives",
                     "the transfer I made on {weekday} still hasn't arrived"],
        "tweet_problems": ["my card got declined at the grocery store for no reason",
                           "the app has been down all morning and I need to pay rent"],
        "requests": ["what documents do I need to open a joint account?",
                     "my new card arrived, do I need to activate it before using it?",
                     "how do I set up a standing order?",
                     "can I raise my daily withdrawal limit for one day?"],
        "questions": ["are branches open on Saturdays?", "is there a fee for international transfers?"],
        "praise": ["{name} got my blocked card working again while I was still at the checkout",
                   "your fraud team caught a bad charge before I even noticed"],
        "deeds": ["catching a fraudulent charge before I noticed", "waiving the overdraft fee"],
        "waiting": ["waiting for a disputed charge to be refunded"],
    },
    "food": {
        "brands": ["Greenbasket", "Snapfare"],
        "handles": ["@greenbasket", "@snapfare"],
        "problems": ["half my grocery order was missing and I was charged for all of it",
                     "my food arrived an hour late and stone cold",
                     "the driver cancelled my order after I'd waited {minutes}",
                     "I got someone else's order and the app won't let me report it"],
        "tweet_problems": ["your driver left my groceries in the rain",
                           "ordered pad thai, received a single cold spring roll",
                           "my eggs arrived as an omelette"],
        "requests": ["can I change the delivery slot for my order on {weekday}?",
                     "do you have a minimum order for free delivery?",
                     "how do I add a tip after the order is delivered?"],
        "questions": ["do you deliver to {city}?", "can I schedule orders a week ahead?"],
        "praise": ["the driver called ahead and found our tricky back entrance",
                   "you refunded my missing items within minutes"],
        "deeds": ["refunding my missing items in two minutes",
                  "the extra cookie the restaurant slipped into my order"],
        "waiting": ["waiting for a refund for missing groceries"],
    },
    "subscription": {
        "brands": ["Quillo", "Streamly", "Brightwave Gym"],
        "handles": ["@quillo_app", "@StreamlyHelp", "@BrightwaveGym"],
        "problems": ["I was charged twice for my subscription this month",
                     "I cancelled in person and you charged my card again",
                     "my account was hacked and support just keeps sending me the FAQ",
                     "your app deleted my saved profiles and watch history"],
        "tweet_problems": ["you made it impossible to cancel my subscription",
                           "price went up again and the only 'feature' is more ads",
                           "charged me after I cancelled"],
        "requests": ["can I pause my subscription for two months while I travel?",
                     "I'd like to add a second user to my account.",
                     "does the annual plan renew automatically?",
                     "how do I switch from the monthly to the annual plan?"],
        "questions": ["is the app down or is it just me?",
                      "what's the difference between the basic and plus plans?"],
        "praise": ["{name} at the front desk froze my membership while I recovered from surgery",
                   "you refunded the accidental renewal without any fuss"],
        "deeds": ["refunding an accidental renewal in minutes",
                  "freezing my membership while I was injured"],
        "waiting": ["waiting for a refund", "waiting for someone to reply"],
    },
}

# ---------------------------------------------------------------------------------------------
# Tweets
# ---------------------------------------------------------------------------------------------

TWEET_TEMPLATES = {
    "positive": ["{reaction} {this} from {brand} — {pclause} {emoji}",
                 "{reaction} the {item} I got last week {is} great, {pclause} {emoji} {tag}",
                 "got {this} from {brand} and {pclause} {emoji}",
                 "shoutout to {handle} for {deed} {emoji}",
                 "{handle} thank you for {deed}! {emoji}",
                 "new {item} day {emoji} {pclause}", "{good_event} {emoji}",
                 "{good_event} and it's not even noon {emoji}",
                 "best {weekday} in a while: {good_event} {emoji} {tag}",
                 "{good_event}. small things {emoji}",
                 "ok the {item} from {brand} {is} {very} good. {pclause} {emoji}",
                 "can confirm {pclause} {tag}", "{good_event}!! {tag}",
                 "10/10 would recommend {this} {emoji}",
                 "didn't expect much from {this} but {pclause} {emoji}"],
    "negative": ["{handle} {tweet_problem}. {demand} {emoji}",
                 "{handle} {tweet_problem} {emoji} {tag}",
                 "{reaction_neg} {this} from {brand} — {pclause} {emoji}",
                 "{reaction_neg} the {item} I bought {duration} ago? {pclause} {tag}",
                 "{bad_event}. {weekday} is off to a great start {emoji}",
                 "{bad_event} {emoji} {tag}", "{bad_event}. love that for me {emoji}",
                 "why does {company} {company_complaint} {emoji}",
                 "dear {handle}, {tweet_problem}. {demand}",
                 "me: expecting a working {item}. {company}: {bad_reality} {emoji}",
                 "{handle} day {n} of {waiting} {tag}",
                 "paid {price} for {this} and {pclause} {emoji}",
                 "never buying from {brand} again. {pclause} {tag}"],
    "neutral": ["{handle} {svc_question}", "anyone tried the new {item} from {brand}? {neutral_followup}",
                "{neutral_event} {emoji}", "{neutral_event}", "{neutral_event} {tag}",
                "{handle} quick question: {svc_question}",
                "poll: {poll_a} or {poll_b}?", "{handle} {svc_question} {tag}",
                "thinking about getting {this}, {neutral_followup}"],
}
REACTIONS = ["ok wow", "honestly", "not gonna lie", "y'all", "update:", "ngl", "okay so",
             "low-key obsessed.", "update after {duration}:", "PSA:"]
REACTIONS_NEG = ["cool cool cool", "great.", "ugh", "so apparently", "update:", "lol", "wow.",
                 "PSA:", "unbelievable.", "of course"]
GOOD_EVENTS = ["my package showed up a day early", "got upgraded to a window seat for free",
               "the café downstairs brought back the pumpkin loaf",
               "support fixed my account in like 5 minutes",
               "the new update finally fixed the battery drain",
               "train was on time for once", "found my favorite hoodie on sale for half price",
               "the new bakery on 5th actually lives up to the hype",
               "finally finished that 1000 piece puzzle", "my refund went through in one day",
               "the hotel left us a bottle of rosé for our anniversary",
               "my delivery driver waited while I ran downstairs, absolute legend",
               "the crêpes at the farmers market today were unreal",
               "barista remembered my order after one visit"]
BAD_EVENTS = ["train cancelled again", "spilled coffee all over my laptop",
              "the wifi died five minutes before my presentation",
              "my package got delivered to a house two streets over",
              "waited {minutes} for a table and they gave it away",
              "the self checkout yelled at me for every single item",
              "my phone screen cracked the day after the warranty ran out",
              "bus didn't show up, walked to work in the rain",
              "the parking app charged me for four hours I didn't use",
              "the ice machine at the hotel has been broken all week",
              "my 'fresh' avocados were rock hard and brown inside",
              "automatic update restarted my laptop mid-exam"]
COMPANY_COMPLAINTS = ["hide the phone number on their website",
                      "keep raising prices every three months",
                      "think a chatbot counts as customer service",
                      "send me 6 emails a day after I unsubscribed",
                      "make me verify my identity three times to change an address"]
BAD_REALITIES = ["*sends it with a cracked screen*", "*ships the wrong color*",
                 "*delivers it to my neighbor*", "*loses it in a warehouse for 2 weeks*",
                 "*charges me twice*"]
DEMANDS = ["fix it.", "DM me back please.", "I want a refund.", "this is unacceptable.",
           "someone please respond.", "is anyone actually working there?",
           "how hard can it be?", "not impressed."]
NEUTRAL_FOLLOWUPS = ["worth it?", "any thoughts?", "how's the battery?", "curious.",
                     "not sure yet.", "asking for a friend.", "reviews seem mixed."]
NEUTRAL_EVENTS = ["ordered the new {item}, arriving {weekday}",
                  "switching phone plans this week, still comparing options",
                  "on hold with the bank, number 12 in the queue",
                  "first time trying a meal kit, we'll see how it goes",
                  "moving apartments on {weekday}, need to set up internet again",
                  "the new café on the corner opens at 7 now",
                  "rebooked my flight for {weekday}",
                  "trying out a standing desk at work this month",
                  "just updated the app, the menu looks different now",
                  "renewed my gym membership for another year",
                  "returned the jacket, exchanging it for a medium",
                  "comparing two laptops, both around $900"]
POLL_OPTIONS = [("earbuds", "over-ear headphones"), ("monthly plan", "annual plan"),
                ("air fryer", "toaster oven"), ("e-reader", "paper books"),
                ("hotel", "rental apartment"), ("train", "plane for a 4 hour trip"),
                ("pizza", "tacos for friday"), ("android", "iphone")]

# ---------------------------------------------------------------------------------------------
# Support messages
# ---------------------------------------------------------------------------------------------

SUPPORT_GREETINGS = ["Hi,", "Hello,", "Hi there,", "Hey,", "Good morning,", "Hello team,",
                     "To whom it may concern,", "Hi {company} support,", ""]
SUPPORT_FRUSTRATION = ["This is the third time I'm writing about this.",
                       "Honestly I'm losing patience.",
                       "Nobody seems able to give me a straight answer.",
                       "This is ridiculous.", "I've been a customer for eight years.",
                       "I'm extremely disappointed.", "Frankly this is unacceptable.",
                       "Your chatbot just keeps sending me in circles."]
SUPPORT_DEMANDS = ["Please refund me.", "I want this fixed today.",
                   "Can someone actually call me back?", "Please escalate this to a manager.",
                   "Cancel my account.", "I expect a full refund and an apology.",
                   "Fix this or I'm taking my business elsewhere.",
                   "I need an answer by {weekday}."]
SUPPORT_NEUTRAL_EXTRAS = ["My reference number is {order}.", "Thanks in advance.",
                          "My account email is the one I'm writing from.", "Thank you.",
                          "Just want to double check before I go ahead.", "No rush.",
                          "I couldn't find it in the FAQ."]
SUPPORT_THANKS = ["I just wanted to say thanks to {name} who helped me on the phone today.",
                  "Huge thanks to your support team.",
                  "Quick note to say {name} in your support team was fantastic.",
                  "Thank you so much for sorting this out.",
                  "I rarely write these, but your team deserves it.",
                  "Just closing the loop on my ticket: all fixed!"]
PRAISE_LEADS = ["just wanted to say", "wanted to let you know", "credit where it's due:",
                "quick thank you:", "I have to say"]
SUPPORT_SIGNOFFS = ["Best regards,", "Thanks,", "Cheers,", "Regards,", "Kind regards,", ""]

# ---------------------------------------------------------------------------------------------
# Forum comments
# ---------------------------------------------------------------------------------------------

FORUM_AGREE = ["Same here.", "+1.", "This.", "Can confirm.", "Agreed.", "Honestly,", "FWIW,",
               "Late to the thread, but", "Just my two cents:", ""]
FORUM_POSITIVE = ["I've had mine for {duration} and it's still going strong.",
                  "switched to {company} last year and haven't looked back.",
                  "the latest firmware fixed it for me, no issues since.",
                  "best money I've spent on my setup, hands down.",
                  "their support replaced mine within a week, really painless.",
                  "the newer model fixed every complaint I had with the old one.",
                  "once you get past the learning curve it's brilliant.",
                  "I was skeptical too, but it completely won me over.",
                  "the people in this forum helped me fix it in ten minutes, you all rock."]
FORUM_NEGATIVE = ["mine died a week after the warranty ran out.",
                  "support told me to reinstall and then stopped replying.",
                  "{company} quietly raised the price again and removed features.",
                  "quality has gone downhill since they moved production.",
                  "I gave up and returned it, not worth the headache.",
                  "every 'fix' in this thread just makes it worse for me.",
                  "three replacements, same problem every time. I'm done.",
                  "it's been broken for months and they still haven't acknowledged it."]
FORUM_NEUTRAL = ["Has anyone compared the {item} from {brand} with the cheaper ones?",
                 "the return window is 30 days if you keep the box.",
                 "I think the difference between the two models is mostly the battery.",
                 "Which firmware version are you on? That might matter.",
                 "Does anyone know if the {item} work{s} with a 220V outlet?",
                 "there's a setting under Advanced that changes this, not sure if it helps.",
                 "{Is} the {item} worth upgrading to if the old {one} still work{s}?",
                 "Genuine question: do people actually use the premium features?",
                 "I'm in {city}, the store here had them in stock yesterday.",
                 "I've only had mine for {duration}, so I can't say yet.",
                 "You can check the serial number on the bottom to see the manufacturing date."]

# ---------------------------------------------------------------------------------------------
# Standalone neutral questions/statements and very short messages
# ---------------------------------------------------------------------------------------------

QUESTIONS = ["{Does} the {item} come with a charger?", "How long is the warranty on {this}?",
             "What are the opening hours on {weekday}?",
             "Can I return {obj} without the original box?",
             "Do you have {this} in a larger size?", "Is there parking near the {place}?",
             "Does the hotel have a shuttle from the airport?",
             "How do I change the email on my account?",
             "{Is} the {item} available in blue?", "When will the {item} be back in stock?",
             "Do you deliver on weekends?", "Is the café open late on Fridays?",
             "What's the difference between the two sizes?",
             "Do you take reservations for groups of eight?",
             "Can I use the app without creating an account?",
             "Does the price include tax?", "Is there a vegetarian menu?",
             "Which version of the {item} fits a 15 inch laptop?",
             "How heavy {is} {this} exactly?", "Does the app support two-factor login?",
             "Is breakfast included in the room rate?",
             "Will there be a restock before {weekday}?",
             "Can someone explain how the loyalty points work?",
             "Is the crème brûlée gluten free?", "Do the rooms have a kettle?",
             "Any discount codes for first orders?", "What payment methods do you accept?",
             "Can I pay with cash on delivery?", "How do I cancel my reservation?",
             "Is the pool heated?", "Is assembly required for {this}?",
             "Where do I find my order number?", "Has anyone had the jalapeño poppers here?",
             "{Does} {this} come with a carrying case?", "{Is} the {item} still being sold?",
             "What's the wait time for a table on {weekday} nights?"]
STATEMENTS = ["Ordered {this} on {weekday}, tracking says it ships tomorrow.",
              "Switched to the annual plan today.",
              "Picked up my order from the store this morning.",
              "Just booked two nights for next month.",
              "Received the package today, haven't opened it yet.",
              "Changed my delivery address in the app.", "Booked a table for four at 7:30.",
              "Returned the {item} at the counter, waiting for the refund confirmation.",
              "Installed the update last night.", "The store moved to the other side of the mall.",
              "My subscription renews on the 14th.",
              "We're staying at the hotel from Friday to Sunday.",
              "Paid the invoice by bank transfer this morning.",
              "It's my first order from this shop.", "Trying the {item} for a week before deciding."]
SHORT_TEXTS = {
    "positive": ["Love it, thank you!", "Best purchase this year.", "Works great, fast shipping.",
                 "10/10 would recommend.", "Exceeded my expectations honestly.",
                 "Super comfy and warm.", "Perfect, exactly as described.", "Absolutely delicious!",
                 "Amazing service, thanks team!", "So happy with this!", "Great app, no complaints.",
                 "Five stars, no notes.", "Obsessed with these shoes.", "Best ramen in town.",
                 "Fast, friendly, fixed it.", "Great value for money.", "Kids love it!",
                 "Wonderful stay, lovely staff.", "Such a cozy café.", "Worth every penny.",
                 "Brilliant update, thank you.", "Arrived early, works perfectly.",
                 "Crispy, hot, perfect.", "The staff were amazing.", "My dog loves it!",
                 "Flawless so far.", "Really impressed, well done.", "Highly recommend this place.",
                 "Beautiful and well made.", "Totally worth the wait.", "Best croissant ever, merci!",
                 "You made my day."],
    "negative": ["Broke after two days.", "Worst customer service ever.",
                 "Never ordering from here again.", "Total waste of money.",
                 "Still waiting on my refund.", "App keeps crashing. Useless.",
                 "Arrived damaged. Very disappointed.", "Cold food, rude staff.",
                 "Doesn't work at all.", "Stop charging my card!", "Completely useless product.",
                 "Terrible update, please revert.", "Filthy room. Avoid.", "Way too expensive.",
                 "Cheap junk, returned it.", "Wrong item again.", "Horrible experience, avoid.",
                 "Flight delayed six hours.", "Internet down again today.", "So disappointed, honestly.",
                 "Zero stars if possible.", "Fell apart in a week.", "Nobody answers the phone.",
                 "Worst pizza I've had.", "Shipping took forever.", "Scam, don't buy.",
                 "Battery dead in hours.", "Refund denied, unbelievable.", "Not as described.",
                 "Ads every five seconds.", "Overpriced and underwhelming."],
    "neutral": ["Arrived today, haven't tried it yet.", "It's okay I guess.",
                "Does it come in black?", "Order placed, waiting on tracking.",
                "Is this dishwasher safe?", "Average. Nothing special.", "Open on Sundays?",
                "Does it fit a queen bed?", "Any update on my order?", "It is what it is.",
                "Not bad, not great.", "Delivery expected on Friday.", "What's the return policy?",
                "Which cable do I need?", "Middle of the road.", "Table for two, 8pm?",
                "Still deciding, honestly.", "Haven't used it much yet.", "Do you ship internationally?",
                "How much is shipping?", "Is there free wifi?",
                "Works as expected.", "Exchanged for a smaller size.", "Can I pay later?",
                "Just checking my booking.", "Same as the old model.", "Is the café dog friendly?",
                "Changed my password today.", "Meh, it's fine.", "Need the invoice, please."],
}

# Informal-text noise: common misspellings and shorthand, applied to a minority of rows.
MISSPELLINGS = {"received": "recieved", "definitely": "definately", "separate": "seperate",
                "really": "realy", "because": "becuase", "until": "untill", "which": "wich",
                "restaurant": "resturant", "their": "there", "literally": "literaly",
                "disappointed": "dissapointed", "tomorrow": "tommorow", "weird": "wierd",
                "probably": "probly", "absolutely": "absolutly", "experience": "experiance",
                "the": "teh", "and": "adn", "immediately": "immediatly", "expected": "expexted"}
SHORTHAND = {"you": "u", "your": "ur", "please": "pls", "thanks": "thx", "though": "tho",
             "going to": "gonna", "to be honest": "tbh", "really": "rly", "people": "ppl",
             "with": "w/", "because": "bc", "tonight": "tonite", "about": "abt"}
CAPS_WORDS = ["never", "worst", "still", "again", "not", "zero", "nobody", "useless", "twice",
              "nothing", "ridiculous", "three", "every"]

# fmt: on

# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------

T = TypeVar("T")
SLOT_RE = re.compile(r"\{(\w+)\}")
ONLY_FOR = "::"  # "noun1,noun2::clause" restricts a clause to those items


class Row(NamedTuple):
    text: str
    label: str
    genre: str


def n_words(text: str) -> int:
    return len(text.split())


def dedup_key(text: str) -> str:
    """Stricter than the test's case/whitespace normalization: also ignores punctuation/emoji."""
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


def sentences(text: str) -> list[str]:
    """Normalized sentences of a text (for spotting a phrase used twice in one message)."""
    parts = re.split(r"(?<=[.!?])\s+", text.lower())
    return [p.strip(" .!?") for p in parts if p.strip(" .!?")]


def cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].islower() else text


class Composer:
    """Fills templates with seeded picks. Pools are drawn like shuffled decks, so every
    building block is used before any repeats, which keeps the corpus from looking repetitive."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._decks: dict[tuple, list[int]] = {}
        self.ctx: dict[str, str] = {}
        self.used: set[str] = set()
        self.used_clauses: set[str] = set()
        self.connectors_used: set[str] = set()
        self.service: dict = SERVICES["shop"]
        self._weekday = 0

    def pick(self, pool: Sequence[T]) -> T:
        key = tuple(pool)
        deck = self._decks.get(key)
        if not deck:
            deck = list(range(len(pool)))
            self.rng.shuffle(deck)
            self._decks[key] = deck
        return pool[deck.pop()]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # -- context -------------------------------------------------------------------------------
    def set_item(self, noun: str, plural: bool) -> None:
        self.ctx.update(
            item=noun,
            this=("these " if plural else "this ") + noun,
            This=("These " if plural else "This ") + noun,
            it="they" if plural else "it",
            It="They" if plural else "It",
            itis="they're" if plural else "it's",
            obj="them" if plural else "it",
            one="ones" if plural else "one",
            s="" if plural else "s",
            es="" if plural else "es",
        )
        self.ctx["is"] = "are" if plural else "is"
        self.ctx["was"] = "were" if plural else "was"
        self.ctx["Is"] = "Are" if plural else "Is"
        self.ctx["Does"] = "Do" if plural else "Does"

    def set_product(self) -> dict:
        domain = PRODUCT_DOMAINS[self.pick(list(PRODUCT_DOMAINS))]
        self.set_item(*self.pick(domain["items"]))
        self.ctx["price_tier"] = domain["price"]
        return domain

    def set_service(self) -> None:
        self.service = SERVICES[self.pick(list(SERVICES))]
        self.ctx["company"] = self.pick(self.service["brands"])
        self.ctx["handle"] = self.pick(self.service["handles"])

    def fits(self, clause: str) -> bool:
        if ONLY_FOR not in clause:
            return True
        return self.ctx.get("item", "") in clause.split(ONLY_FOR)[0].split(",")

    def options(self, pool: Sequence[str]) -> list[str]:
        """Clauses of pool that fit the current item and were not used yet in this text."""
        fitting = (c.split(ONLY_FOR)[-1] for c in pool if self.fits(c))
        return [c for c in fitting if c not in self.used_clauses]

    def slot(self, name: str) -> str:
        if name in self.ctx:
            return self.ctx[name]
        simple = {
            "duration": DURATIONS, "person": PERSONS, "name": NAMES, "brand": PRODUCT_BRANDS,
            "city": CITIES, "minutes": MINUTES, "n": SMALL_NUMBERS, "occasion": OCCASIONS,
            "trip": TRIP_REASONS, "very": INTENSIFIERS, "good_event": GOOD_EVENTS,
            "demand": DEMANDS, "bad_event": BAD_EVENTS, "company_complaint": COMPANY_COMPLAINTS,
            "bad_reality": BAD_REALITIES, "neutral_followup": NEUTRAL_FOLLOWUPS,
            "neutral_event": NEUTRAL_EVENTS, "reaction": REACTIONS, "reaction_neg": REACTIONS_NEG,
        }  # fmt: skip
        if name in simple:
            return self.pick(simple[name])
        per_service = {"tweet_problem": "tweet_problems", "svc_question": "questions",
                       "deed": "deeds", "waiting": "waiting"}  # fmt: skip
        if name in per_service:
            return self.pick(self.service[per_service[name]])
        if name in ("company", "handle"):
            self.set_service()
            return self.ctx[name]
        if name == "price":
            return self.pick(PRICE_TIERS[self.ctx.get("price_tier", "mid")])
        if name == "weekday":
            self._weekday = self.rng.randrange(7)
            return WEEKDAYS[self._weekday]
        if name == "weekday2":  # a day or two after the last {weekday}
            return WEEKDAYS[(self._weekday + self.rng.choice([1, 2])) % 7]
        if name == "dish":
            dish, plural = self.pick(RESTAURANTS[self.ctx["place"]])
            self.ctx.update(dwas="were" if plural else "was", dis="are" if plural else "is")
            self.ctx["dit"] = "they" if plural else "it"
            return dish
        if name in ("dwas", "dis", "dit"):  # only valid after a {dish} in the same clause
            raise KeyError(f"slot {{{name}}} used before {{dish}}")
        if name == "order":
            return "#" + str(self.rng.randint(10_000, 9_999_999))
        if name == "time":
            return self.pick(["9am", "10:30", "2pm", "4:15", "11am", "noon", "5:45pm"])
        raise KeyError(f"unknown slot {{{name}}}")

    def fill(self, template: str) -> str:
        # Slots may expand to text with slots of their own (e.g. {good_event} -> {minutes}).
        text = template
        for _ in range(3):
            new = SLOT_RE.sub(lambda m: self.slot(m.group(1)), text)
            if new == text:
                break
            text = new
            for key in ("dwas", "dis", "dit"):  # dish agreement holds for one clause only
                self.ctx.pop(key, None)
        text = re.sub(r"\s+", " ", text).strip()
        return re.sub(r"\s+([,.!?:])", r"\1", text)

    def clause(self, aspect: dict, sentiment: str) -> str:
        template = self.pick(self.options(aspect[sentiment]))
        self.used_clauses.add(template)
        return self.fill(template)

    # -- review-like genres --------------------------------------------------------------------
    def body_sentences(self, aspects: dict, label: str, k: int) -> list[str]:
        """Up to k opinion sentences, each on an aspect not yet used in this text (self.used),
        with sentiment following the label."""
        names = [
            n
            for n in aspects
            if n not in self.used and all(self.options(aspects[n][s]) for s in LABELS)
        ]
        self.rng.shuffle(names)
        if "purpose" in names and self.chance(0.6):
            # Apps: usually say what the app is for before the generic aspects.
            names.remove("purpose")
            names.insert(0, "purpose")
        out: list[str] = []
        names_mixed: list[str] = []
        if label == "neutral":
            mode = self.rng.choices(["flat", "mixed", "mixed_flat"], [4, 4, 2])[0]
            if len(names) < 2:
                mode = "flat"
            if mode != "flat":
                pos = self.clause(aspects[names[0]], "positive")
                neg = self.clause(aspects[names[1]], "negative")
                join = self.pick(MIXED_JOIN)
                out.append(join.format(Pos=cap(pos), pos=pos, Neg=cap(neg), neg=neg))
                names_mixed, names = names[:2], names[2:]
            for name in names[: max(k - len(out), 0 if out else 1)]:
                out.append(cap(self.clause(aspects[name], "neutral")) + ".")
                self.used.add(name)
            if mode != "flat":
                self.used.update(names_mixed)
                out.append(self.fill(self.pick(MIXED_VERDICT)))
            return out
        other = "negative" if label == "positive" else "positive"
        twist = k >= 2 and len(names) >= 2 and self.chance(0.25)
        n_main = min(k - 1 if twist else k, len(names) - twist)
        for name in names[:n_main]:
            clause = self.clause(aspects[name], label)
            conn = self.pick(CONNECTORS[label]) if self.used else ""
            if conn in self.connectors_used:
                conn = ""
            self.connectors_used.add(conn)
            self.used.add(name)
            end = "!" if label == "positive" and self.chance(0.2) else "."
            out.append(conn + (clause if conn else cap(clause)) + end)
        if twist:
            self.used.add(names[n_main])
            clause = self.clause(aspects[names[n_main]], other)
            tmpl = self.pick(MINOR_COMPLAINT if label == "positive" else GRUDGING_PRAISE)
            out.append(tmpl.format(clause=clause, Clause=cap(clause)))
        return out

    def review(self, label: str, blocks: dict, shape: str) -> str:
        """A review of 1 to ~8 sentences: [title] [opener] [aside] opinions [closer]."""
        k = {"one": 1, "two": 2, "three": 3, "mid": self.rng.choice([3, 4]), "long": 4}[shape]
        head: list[str] = []
        if blocks.get("titles") and self.chance(0.22):
            head.append(self.fill(self.pick(blocks["titles"][label])))
        if self.chance(0.35 if shape in ("one", "two") else 0.75):
            head.append(self.fill(self.pick(blocks["openers"])))
        if shape in ("mid", "long") and self.chance(0.4):
            head.append(self.fill(self.pick(blocks["asides"][label])))
        body = self.body_sentences(blocks["aspects"], label, k)
        tail: list[str] = []
        if self.chance(0.3 if shape == "one" else 0.55):
            tail.append(self.fill(self.pick(blocks["closers"][label])))
        if shape == "long":
            # Long tail: keep adding opinions until the review reaches its target length.
            target = self.rng.randint(58, 78)
            for _ in range(6):
                if n_words(" ".join(head + body + tail)) >= target:
                    break
                more = self.body_sentences(blocks["aspects"], label, 1)
                if not more:
                    break  # every aspect has been used; stop rather than repeat
                body.append(more[0])
        while n_words(" ".join(head + body + tail)) > MAX_WORDS and len(body) > 1:
            del body[len(body) // 2]
        return " ".join(head + body + tail)

    def product(self, label: str, shape: str) -> str:
        domain = self.set_product()
        aspects = dict(domain["aspects"])
        generic = list(domain.get("generic", GENERIC_ASPECTS))
        self.rng.shuffle(generic)
        for name in generic[: self.rng.choice([1, 1, 2])]:
            aspects["generic_" + name] = GENERIC_ASPECTS[name]
        blocks = {"aspects": aspects, "openers": PRODUCT_OPENERS, "asides": REVIEW_ASIDES,
                  "titles": PRODUCT_TITLES, "closers": PRODUCT_CLOSERS}  # fmt: skip
        return self.review(label, blocks, shape)

    def place(self, label: str, shape: str) -> str:
        if self.chance(0.6):
            self.ctx["place"] = self.pick(list(RESTAURANTS))
            aspects, openers = RESTAURANT_ASPECTS, RESTAURANT_OPENERS
        else:
            self.ctx["place"] = self.pick(HOTELS)
            aspects, openers = HOTEL_ASPECTS, HOTEL_OPENERS
        self.set_item(self.ctx["place"], False)
        blocks = {"aspects": aspects, "openers": openers, "asides": PLACE_ASIDES,
                  "closers": PLACE_CLOSERS}  # fmt: skip
        return self.review(label, blocks, shape)

    def app(self, label: str, shape: str) -> str:
        kind = self.pick(list(APPS))
        self.ctx["app"] = kind
        self.set_item(kind, False)
        aspects = {"purpose": APPS[kind], **APP_ASPECTS}
        blocks = {"aspects": aspects, "openers": APP_OPENERS, "asides": APP_ASIDES,
                  "closers": APP_CLOSERS}  # fmt: skip
        return self.review(label, blocks, shape)

    # -- short, informal genres ----------------------------------------------------------------
    def tweet(self, label: str) -> str:
        domain = self.set_product()
        self.set_service()
        self.ctx["emoji"] = self.pick(EMOJIS[label])
        self.ctx["tag"] = self.pick(HASHTAGS[label])
        if label != "neutral":
            aspects = domain["aspects"]
            names = [n for n in aspects if self.options(aspects[n][label])]
            self.ctx["pclause"] = self.clause(aspects[self.pick(names)], label)
        self.ctx["poll_a"], self.ctx["poll_b"] = self.pick(POLL_OPTIONS)
        text = self.fill(self.pick(TWEET_TEMPLATES[label]))
        if self.chance(0.15):
            text += " " + self.pick(EMOJIS[label])
        return text

    def support(self, label: str) -> str:
        self.set_product()
        self.set_service()
        svc = self.service
        parts: list[str] = []
        greeting = self.pick(SUPPORT_GREETINGS)
        if label == "negative":
            problem = self.pick(svc["problems"])
            parts.append(f"{greeting} {problem}." if greeting else cap(problem) + ".")
            if self.chance(0.7):
                parts.append(self.pick(SUPPORT_FRUSTRATION))
            if self.chance(0.8):
                parts.append(self.pick(SUPPORT_DEMANDS))
        elif label == "neutral":
            request = self.pick(svc["requests"])
            parts.append(f"{greeting} {request}" if greeting else cap(request))
            if self.chance(0.6):
                parts.append(self.pick(SUPPORT_NEUTRAL_EXTRAS))
        else:
            thanks = self.pick(SUPPORT_THANKS)
            praise = self.pick(svc["praise"])
            if self.chance(0.5):
                parts += [thanks, cap(praise) + "."]
            else:
                lead = self.pick(PRAISE_LEADS)
                parts.append(
                    f"{greeting} {lead} {praise}." if greeting else f"{cap(lead)} {praise}!"
                )
                if self.chance(0.5):
                    parts.append(thanks)
        if self.chance(0.3):
            parts.append(f"{self.pick(SUPPORT_SIGNOFFS)} {self.pick(MY_NAMES)}".strip())
        return self.fill(" ".join(parts))

    def forum(self, label: str) -> str:
        domain = self.set_product()
        pool = {"positive": FORUM_POSITIVE, "negative": FORUM_NEGATIVE}.get(label, FORUM_NEUTRAL)
        template = self.pick(pool)
        body = self.fill(template)
        agree = self.pick(FORUM_AGREE)
        if label == "neutral" and body[:1].isupper():
            text = body  # questions stand alone
        elif agree.endswith(".") or not agree:
            text = f"{agree} {cap(body)}".strip()
        else:
            text = f"{agree} {body}"
        if "{company}" not in template and self.chance(0.35):  # add a detail about the item
            aspects = domain["aspects"]
            names = [n for n in aspects if self.options(aspects[n][label])]
            extra = self.clause(aspects[self.pick(names)], label)
            lead = {"positive": "Also ", "negative": "And ", "neutral": "For reference, "}[label]
            text += f" {lead}{extra}."
        return text

    def question(self) -> str:
        self.set_product()
        self.ctx["place"] = self.pick(list(RESTAURANTS) + HOTELS)
        pool = QUESTIONS if self.chance(0.7) else STATEMENTS
        text = self.fill(self.pick(pool))
        if pool is QUESTIONS and self.chance(0.3):
            lead = self.pick(["Hi! ", "Quick question. ", "Hello, ", "Hey all, ", "Hi, "])
            if lead.endswith(", "):
                text = text[0].lower() + text[1:]
            text = lead + text
        return text

    def short(self, label: str) -> str:
        text = self.pick(SHORT_TEXTS[label])
        if self.chance(0.25):
            text += " " + self.pick(EMOJIS[label])
        return text

    # -- surface variety -----------------------------------------------------------------------
    def noisify(self, text: str, label: str) -> str:
        """Casing, typos and shorthand as in real user messages (one or two per text)."""
        ops = ["lower", "apostrophes", "misspell", "shorthand", "stretch", "nopunct"]
        if label == "negative":
            ops.append("caps")
        for op in self.rng.sample(ops, self.rng.choice([1, 1, 2])):
            if op == "lower":
                text = text.lower().rstrip(".")
            elif op == "apostrophes":
                text = re.sub(r"\b(\w+)'(t|m|s|re|ve|ll|d)\b", r"\1\2", text)
            elif op == "misspell":
                text = self._swap_word(text, MISSPELLINGS)
            elif op == "shorthand":
                text = self._swap_word(text, SHORTHAND)
            elif op == "stretch":
                text = re.sub(r"\bso\b", "sooo", text, count=1)
                text = re.sub(r"!(?=\s|$)", "!!!", text, count=1)
            elif op == "nopunct":
                text = text.rstrip(".")
            elif op == "caps":
                words = [w for w in CAPS_WORDS if re.search(rf"\b{w}\b", text)]
                if words:
                    w = self.pick(words)
                    text = re.sub(rf"\b{w}\b", w.upper(), text, count=1)
        return text

    def _swap_word(self, text: str, table: dict[str, str]) -> str:
        present = [w for w in table if re.search(rf"\b{re.escape(w)}\b", text)]
        if not present:
            return text
        word = self.pick(present)
        return re.sub(rf"\b{re.escape(word)}\b", table[word], text, count=1)

    # -- one text ------------------------------------------------------------------------------
    def compose(self, genre: str, label: str) -> str:
        self.ctx = {}
        self.used: set[str] = set()  # aspects already voiced in this text
        self.used_clauses: set[str] = set()
        self.connectors_used: set[str] = {""}
        shape = self.rng.choices(["one", "two", "three", "mid", "long"], [26, 30, 18, 14, 12])[0]
        if genre == "product":
            text = self.product(label, shape)
        elif genre == "place":
            text = self.place(label, shape)
        elif genre == "app":
            text = self.app(label, shape)
        elif genre == "tweet":
            text = self.tweet(label)
        elif genre == "support":
            text = self.support(label)
        elif genre == "forum":
            text = self.forum(label)
        elif genre == "question":
            text = self.question()
        else:
            text = self.short(label)
        noise_p = {"tweet": 0.45, "app": 0.2, "forum": 0.2, "support": 0.1, "short": 0.2}
        if self.chance(noise_p.get(genre, 0.07)):
            text = self.noisify(text, label)
        return text


def generate(seed: int = SEED) -> list[Row]:
    """All rows, in the order written to the CSV (shuffled across labels and genres)."""
    comp = Composer(seed)
    rows: list[Row] = []
    seen: set[str] = set()
    for label in LABELS:
        weights = GENRE_WEIGHTS[label]
        total = sum(weights.values())
        quotas = {g: round(TARGET_PER_LABEL[label] * w / total) for g, w in weights.items()}
        # Absorb rounding in the largest genre so each label hits its target exactly.
        quotas["product"] += TARGET_PER_LABEL[label] - sum(quotas.values())
        for genre, quota in quotas.items():
            made, attempts = 0, 0
            while made < quota:
                attempts += 1
                if attempts > quota * 50:
                    raise RuntimeError(f"building blocks exhausted for {genre}/{label}")
                text = comp.compose(genre, label)
                key = dedup_key(text)
                if key in seen or not MIN_WORDS <= n_words(text) <= MAX_WORDS:
                    continue
                if len(set(sentences(text))) < len(sentences(text)):
                    continue  # e.g. "Three stars." as both title and closer
                seen.add(key)
                rows.append(Row(text, label, genre))
                made += 1
    comp.rng.shuffle(rows)
    return rows


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "text", "label"])
    for i, row in enumerate(rows, start=1):
        writer.writerow([i, row.text, row.label])
    return buf.getvalue()


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile (an actual value from the data)."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def stats_markdown(rows: Sequence[Row]) -> str:
    lengths = sorted(n_words(r.text) for r in rows)
    n = len(rows)
    labels = Counter(r.label for r in rows)
    genres = Counter(r.genre for r in rows)
    non_ascii = sum(1 for r in rows if not r.text.isascii())
    lines = [
        f"Rows: **{n}** (seed {SEED}); rows with non-ASCII characters (emoji, accents): "
        f"{non_ascii} ({100 * non_ascii / n:.1f}%).",
        "",
        "| label | rows | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {lab} | {labels[lab]} | {100 * labels[lab] / n:.1f}% |" for lab in LABELS]
    lines += ["", "| genre | rows |", "|---|---:|"]
    lines += [f"| {g} | {c} |" for g, c in sorted(genres.items(), key=lambda kv: -kv[1])]
    pcts = {p: percentile(lengths, p) for p in (10, 50, 90, 99)}
    lines += [
        "",
        "Length in words (whitespace-separated tokens): "
        f"min {lengths[0]}, p10 {pcts[10]}, p50 {pcts[50]}, p90 {pcts[90]}, "
        f"p99 {pcts[99]}, max {lengths[-1]}, mean {sum(lengths) / n:.1f}.",
        "",
        "| words | rows | share |",
        "|---|---:|---:|",
    ]
    bins = [(3, 5), (6, 10), (11, 20), (21, 30), (31, 40), (41, 50), (51, 60), (61, 70), (71, 80)]
    for lo, hi in bins:
        c = sum(1 for x in lengths if lo <= x <= hi)
        lines.append(f"| {lo}-{hi} | {c} | {100 * c / n:.1f}% |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV path to write/check")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="verify --out equals a fresh run")
    group.add_argument("--stats", action="store_true", help="print markdown statistics")
    args = parser.parse_args(argv)
    rows = generate()
    content = to_csv(rows)
    if args.stats:
        print(stats_markdown(rows))
        return 0
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != content:
            print(f"{args.out} is out of date: run python data/make_corpus.py", file=sys.stderr)
            return 1
        print(f"{args.out} matches a fresh generation ({len(rows)} rows)")
        return 0
    args.out.write_text(content, encoding="utf-8", newline="")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
