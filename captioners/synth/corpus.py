"""Known text per script for synthetic renders: phrases, paragraph sentences and menu/table items.

Text is real language (shop signs, greetings, common sentences), not random characters, so
renders resemble the signs, slides and menus the seeds' text-rendering data covers and a
language detector or OCR language model sees realistic input. Fonts are Noto faces shipped
by Debian's fonts-noto-core / fonts-noto-cjk; a face index selects the CJK region variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flywheel.fonts import FONT_DIRS, font_index, script_fonts


@dataclass(frozen=True)
class ScriptText:
    code: str  # ISO 15924
    lang: str  # ISO 639-1
    fonts: tuple[tuple[str, int], ...]  # (file name, face index) in preference order
    phrases: tuple[str, ...]
    sentences: tuple[str, ...]
    items: tuple[str, ...]  # menu / table entries
    rtl: bool = False
    spaces: bool = True  # False: wrap between any two characters (CJK, Thai)


def _fonts(code: str, *styles: str) -> tuple[tuple[str, int], ...]:
    """(file, face) pairs of the one font catalogue, in this synthesiser's order of preference."""
    return tuple((f.filename, f.index) for f in script_fonts(code, styles))


_MAIN = ("sans-serif", "serif", "bold sans-serif")  # Latin, Cyrillic, CJK: regular faces first
_PAIRED = ("sans-serif", "bold sans-serif", "serif")  # Indic and Thai: the sans family first


SCRIPTS: dict[str, ScriptText] = {
    s.code: s
    for s in (
        ScriptText(
            "Latn",
            "en",
            _fonts("Latn", *_MAIN),
            (
                "OPEN DAILY",
                "Fresh Coffee",
                "Summer Sale",
                "Welcome Home",
                "City Library",
                "Exit Only",
                "Good Morning",
                "Bakery and Cafe",
                "Platform 9",
                "No Parking",
            ),
            (
                "The museum opens at nine every morning.",
                "Please keep the door closed at all times.",
                "Fresh bread is baked here every day.",
                "The next train leaves from platform four.",
                "Our garden is open to visitors in spring.",
            ),
            ("Espresso 3.50", "Green tea 2.80", "Croissant 2.20", "Lemon cake 4.10", "Orange juice 3.90"),
        ),
        ScriptText(
            "Cyrl",
            "ru",
            _fonts("Cyrl", *_MAIN),
            ("Добро пожаловать", "Свежий хлеб", "Открыто", "Привет мир", "Городская библиотека", "Выход"),
            (
                "Музей открывается в девять утра.",
                "Пожалуйста, закрывайте дверь.",
                "Свежий хлеб выпекается каждый день.",
                "Следующий поезд отправляется с четвёртой платформы.",
            ),
            ("Кофе 150", "Чай 90", "Пирог 120", "Сок 110", "Блины 200"),
        ),
        ScriptText(
            "Hans",
            "zh",
            _fonts("Hans", *_MAIN),
            ("欢迎光临", "新鲜咖啡", "你好世界", "春节快乐", "城市图书馆", "出口", "营业时间"),
            ("博物馆每天早上九点开门。", "请随手关门。", "这里每天都有新鲜的面包。", "下一班火车从四号站台出发。"),
            ("咖啡 十五元", "绿茶 十元", "面包 八元", "蛋糕 二十元", "果汁 十二元"),
            spaces=False,
        ),
        ScriptText(
            "Jpan",
            "ja",
            _fonts("Jpan", *_MAIN),
            ("ようこそ", "こんにちは世界", "東京駅", "営業中", "図書館", "出口はこちら"),
            (
                "博物館は毎朝九時に開きます。",
                "ドアは必ず閉めてください。",
                "ここでは毎日パンを焼いています。",
                "次の電車は四番線から出発します。",
            ),
            ("コーヒー 四百円", "緑茶 三百円", "パン 二百円", "ケーキ 五百円", "ジュース 三百円"),
            spaces=False,
        ),
        ScriptText(
            "Kore",
            "ko",
            _fonts("Kore", *_MAIN),
            ("환영합니다", "안녕하세요", "신선한 커피", "서울역", "도서관", "출구"),
            (
                "박물관은 매일 아침 아홉 시에 문을 엽니다.",
                "문을 꼭 닫아 주세요.",
                "여기서 매일 빵을 굽습니다.",
                "다음 기차는 사번 승강장에서 출발합니다.",
            ),
            ("커피 사천원", "녹차 삼천원", "빵 이천원", "케이크 오천원", "주스 삼천원"),
        ),
        ScriptText(
            "Arab",
            "ar",
            _fonts("Arab", "sans-serif", "naskh calligraphic", "bold sans-serif"),
            ("مرحبا بالعالم", "أهلا وسهلا", "قهوة طازجة", "مفتوح", "مكتبة المدينة", "مخرج"),
            ("يفتح المتحف في التاسعة صباحا.", "يرجى إغلاق الباب دائما.", "نخبز الخبز الطازج كل يوم."),
            ("قهوة ١٥", "شاي ١٠", "خبز ٥", "كعكة ٢٠", "عصير ١٢"),
            rtl=True,
        ),
        ScriptText(
            "Deva",
            "hi",
            _fonts("Deva", *_PAIRED),
            ("नमस्ते दुनिया", "स्वागत है", "ताज़ा कॉफ़ी", "शुभ प्रभात", "पुस्तकालय", "निकास"),
            ("संग्रहालय हर सुबह नौ बजे खुलता है।", "कृपया दरवाज़ा बंद रखें।", "यहाँ हर दिन ताज़ी रोटी बनती है।"),
            ("चाय १०", "कॉफ़ी २०", "समोसा १५", "लस्सी ३०", "जूस २५"),
        ),
        ScriptText(
            "Thai",
            "th",
            _fonts("Thai", *_PAIRED),
            ("สวัสดีชาวโลก", "ยินดีต้อนรับ", "กาแฟสด", "ห้องสมุด", "ทางออก"),
            ("พิพิธภัณฑ์เปิดทุกวันเวลาเก้าโมงเช้า", "กรุณาปิดประตูทุกครั้ง", "เราอบขนมปังสดทุกวัน"),
            ("กาแฟ ๕๐ บาท", "ชาเขียว ๔๐ บาท", "ขนมปัง ๓๐ บาท", "น้ำส้ม ๔๕ บาท"),
            spaces=False,
        ),
        ScriptText(
            "Beng",
            "bn",
            _fonts("Beng", *_PAIRED),
            ("স্বাগতম", "নমস্কার", "তাজা কফি", "গ্রন্থাগার", "প্রস্থান"),
            ("জাদুঘর প্রতিদিন সকাল নয়টায় খোলে।", "দয়া করে দরজা বন্ধ রাখুন।"),
            ("চা ১০", "কফি ২০", "মিষ্টি ১৫", "রুটি ৫"),
        ),
        ScriptText(
            "Taml",
            "ta",
            _fonts("Taml", *_PAIRED),
            ("வணக்கம்", "நல்வரவு", "புதிய காபி", "நூலகம்", "வெளியேறு"),
            ("அருங்காட்சியகம் காலை ஒன்பது மணிக்கு திறக்கும்.", "தயவுசெய்து கதவை மூடவும்."),
            ("காபி 20", "தேநீர் 10", "இட்லி 30", "தோசை 40"),
        ),
        ScriptText(
            "Gujr",
            "gu",
            _fonts("Gujr", *_PAIRED),
            ("સ્વાગત છે", "નમસ્તે", "તાજી કોફી", "પુસ્તકાલય", "બહાર નીકળો"),
            ("સંગ્રહાલય દરરોજ સવારે નવ વાગ્યે ખુલે છે.", "કૃપા કરીને દરવાજો બંધ રાખો."),
            ("ચા ૧૦", "કોફી ૨૦", "ઢોકળા ૩૦", "ખમણ ૨૫"),
        ),
    )
}


def fonts_for(spec: ScriptText, dirs: tuple[Path, ...] = FONT_DIRS) -> list[tuple[Path, int]]:
    """Installed fonts of `spec`, in preference order (empty when none is installed)."""
    index = font_index(tuple(dirs))
    return [(index[name], face) for name, face in spec.fonts if name in index]
