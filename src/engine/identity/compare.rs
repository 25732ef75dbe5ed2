//! Normalization and similarity measures the scored identity model compares values with.
//!
//! Everything here is pure and cheap: it runs for every block candidate of every record
//! that no exact key joins. String similarity comes from `strsim` (Jaro-Winkler,
//! Damerau-Levenshtein); what is ours is the normalization around it: accents and case
//! folded, nicknames grouped, company legal forms dropped.

/// Lowercase ASCII-ish letters and digits of `s`, words separated by one space: "  José
/// O'Neil " gives "jose oneil". Latin accents fold to their base letter so "Müller" and
/// "Muller" compare equal; apostrophes and dots vanish inside a word ("O'Neil", "St.").
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = fold_char(c);
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else if !matches!(c, '\'' | '’' | '.') {
            gap = true;
        }
    }
    out
}

fn fold_char(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' => 'i',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
        'ý' | 'ÿ' => 'y',
        'ś' | 'š' | 'ş' => 's',
        'ź' | 'ż' | 'ž' => 'z',
        'ł' => 'l',
        'ř' => 'r',
        'ť' => 't',
        'ď' => 'd',
        'ß' => 's',
        c => c,
    }
}

/// Jaro-Winkler similarity in [0, 1].
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b)
}

/// Edits (insert, delete, substitute, swap two neighbours) between `a` and `b`.
pub fn damerau(a: &str, b: &str) -> usize {
    strsim::damerau_levenshtein(a, b)
}

/// Digits only: "+1 (415) 555-0100" gives "14155550100".
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Given-name groups: every name in a group is the same given name. The first of each
/// group is its root. Common English, French, German and Spanish forms; a deployment with
/// other names extends it through the model file's `nicknames`.
const NICKNAMES: &[&[&str]] = &[
    &["alexander", "alex", "alec", "sasha", "xander", "sandy"],
    &["alexandra", "alex", "alexa", "lexi", "sandra", "sasha"],
    &["andrew", "andy", "drew", "andre", "andres"],
    &["anthony", "tony", "antonio", "anton"],
    &["barbara", "barb", "babs", "barbie", "bobbie"],
    &["benjamin", "ben", "benny", "benji"],
    &[
        "catherine",
        "kate",
        "katie",
        "cathy",
        "kathy",
        "katherine",
        "kathryn",
        "cat",
        "kat",
        "kitty",
        "trina",
    ],
    &["charles", "charlie", "chuck", "chas", "carl", "karl"],
    &["christopher", "chris", "kit", "topher", "cristopher"],
    &[
        "christine",
        "chris",
        "christina",
        "tina",
        "kristin",
        "kristen",
        "kristina",
        "chrissy",
    ],
    &["daniel", "dan", "danny"],
    &["david", "dave", "davy"],
    &["deborah", "debbie", "deb", "debra"],
    &["donald", "don", "donnie"],
    &["dorothy", "dot", "dottie", "dolly"],
    &["edward", "ed", "eddie", "ted", "teddy", "ned"],
    &[
        "elizabeth",
        "liz",
        "lizzie",
        "beth",
        "betty",
        "betsy",
        "eliza",
        "elisa",
        "lisa",
        "libby",
        "bess",
        "elisabeth",
    ],
    &["eleanor", "ellie", "nora", "elaine", "ella"],
    &["frances", "fran", "frankie", "francine"],
    &[
        "francis",
        "frank",
        "frankie",
        "francisco",
        "paco",
        "franz",
        "francois",
    ],
    &["frederick", "fred", "freddie", "fritz", "friedrich"],
    &["gregory", "greg"],
    &["harold", "harry", "hal"],
    &[
        "henry", "hank", "harry", "hal", "henri", "heinrich", "enrique",
    ],
    &["isabella", "isabel", "bella", "izzy", "isabelle"],
    &["jacob", "jake", "jack", "jakob"],
    &["james", "jim", "jimmy", "jamie", "jaime", "jacques"],
    &["jennifer", "jen", "jenny", "jenn"],
    &["jessica", "jess", "jessie"],
    &[
        "john", "jack", "johnny", "jon", "juan", "johann", "johannes", "hans", "jean", "ian",
        "sean", "shawn",
    ],
    &["jonathan", "jon", "jonny", "nathan"],
    &["joseph", "joe", "joey", "jose", "giuseppe", "josef"],
    &["joshua", "josh"],
    &["katherine", "kate", "katie", "kathy", "kat", "catherine"],
    &["kenneth", "ken", "kenny"],
    &["lawrence", "larry", "laurence", "laurent"],
    &["leslie", "les", "lesley"],
    &["leonard", "leo", "len", "lenny", "leon"],
    &[
        "margaret",
        "maggie",
        "meg",
        "peggy",
        "marge",
        "margie",
        "greta",
        "gretchen",
        "margot",
        "marguerite",
        "margarita",
        "rita",
        "daisy",
    ],
    &["matthew", "matt", "matty", "mathieu", "matthias", "mateo"],
    &[
        "michael", "mike", "mikey", "mick", "mickey", "michel", "miguel", "mikhail",
    ],
    &[
        "nicholas", "nick", "nicky", "nico", "nicolas", "klaus", "colin",
    ],
    &["patricia", "pat", "patty", "patsy", "trish", "tricia"],
    &["patrick", "pat", "paddy", "rick", "patricio"],
    &["peter", "pete", "pierre", "pedro", "pietro"],
    &["philip", "phil", "pip", "phillip", "felipe", "philippe"],
    &["rebecca", "becky", "becca", "reba"],
    &[
        "richard", "rick", "ricky", "rich", "richie", "dick", "ricardo",
    ],
    &["robert", "rob", "robbie", "bob", "bobby", "bert", "roberto"],
    &["ronald", "ron", "ronnie"],
    &["samantha", "sam", "sammy"],
    &["samuel", "sam", "sammy"],
    &[
        "stephen", "steve", "steven", "stevie", "stefan", "esteban", "etienne",
    ],
    &["susan", "sue", "susie", "suzanne", "susanne", "suzy"],
    &["theodore", "ted", "teddy", "theo"],
    &["thomas", "tom", "tommy", "thom", "tomas"],
    &["timothy", "tim", "timmy"],
    &["victoria", "vicky", "tori", "vickie"],
    &["walter", "walt", "wally"],
    &[
        "william",
        "will",
        "bill",
        "billy",
        "willy",
        "liam",
        "wilhelm",
        "guillaume",
        "guillermo",
    ],
    &["zachary", "zach", "zack"],
];

/// Whether two folded given names are the same name under a nickname: "bill" and
/// "william", "peggy" and "margaret". Equal names are not reported here.
pub fn nicknames(a: &str, b: &str) -> bool {
    a != b
        && NICKNAMES
            .iter()
            .any(|group| group.contains(&a) && group.contains(&b))
}

/// The root of a folded given name's first group ("bill" gives "william"), or the name.
/// Blocking keys use it so that "Bill Smith" and "William Smith" meet.
pub fn name_root(name: &str) -> &str {
    NICKNAMES
        .iter()
        .find(|group| group.contains(&name))
        .and_then(|group| group.first().copied())
        .unwrap_or(name)
}

/// Legal forms and filler words that say nothing about which company it is.
const COMPANY_NOISE: &[&str] = &[
    "the",
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "gmbh",
    "mbh",
    "ag",
    "kg",
    "se",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "bv",
    "nv",
    "plc",
    "pty",
    "pte",
    "oy",
    "oyj",
    "ab",
    "as",
    "asa",
    "aps",
    "kk",
    "group",
    "holding",
    "holdings",
    "intl",
    "international",
    "and",
    "&",
];

/// A company name reduced to what identifies it: "ACME Corporation", "Acme, Inc." and "The
/// Acme Co." all give "acme". A name made only of noise words keeps them ("The Company").
pub fn company(name: &str) -> String {
    let folded = fold(name);
    let kept: Vec<&str> = folded
        .split(' ')
        .filter(|w| !COMPANY_NOISE.contains(w))
        .collect();
    if kept.is_empty() {
        folded
    } else {
        kept.join(" ")
    }
}

/// American Soundex of the letters of `s` ("Robert" and "Rupert" give "R163"): a coarse
/// blocking key that survives most typos after the first letter.
pub fn soundex(s: &str) -> String {
    fn code(c: char) -> Option<char> {
        Some(match c {
            'b' | 'f' | 'p' | 'v' => '1',
            'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => '2',
            'd' | 't' => '3',
            'l' => '4',
            'm' | 'n' => '5',
            'r' => '6',
            _ => return None,
        })
    }
    let mut letters = s
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase());
    let Some(first) = letters.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(4);
    out.push(first.to_ascii_uppercase());
    let mut last = code(first);
    for c in letters {
        let cd = code(c);
        if let Some(d) = cd {
            if cd != last {
                out.push(d);
                if out.len() == 4 {
                    break;
                }
            }
        }
        // 'h' and 'w' do not separate equal codes; vowels do.
        if !matches!(c, 'h' | 'w') {
            last = cd;
        }
    }
    while out.len() < 4 {
        out.push('0');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_case_accents_and_punctuation() {
        assert_eq!(fold("  José O'Neil "), "jose oneil");
        assert_eq!(fold("MÜLLER-Lüdenscheidt"), "muller ludenscheidt");
        assert_eq!(fold("St. John"), "st john");
    }

    #[test]
    fn nicknames_are_one_name() {
        assert!(nicknames("bill", "william"));
        assert!(nicknames("peggy", "margaret"));
        assert!(!nicknames("bill", "robert"));
        assert!(!nicknames("anna", "anna"));
        assert_eq!(name_root("bob"), "robert");
        assert_eq!(name_root("zoltan"), "zoltan");
    }

    #[test]
    fn company_names_lose_their_legal_form() {
        assert_eq!(company("ACME Corporation"), "acme");
        assert_eq!(company("Acme, Inc."), "acme");
        assert_eq!(company("The Acme Co."), "acme");
        assert_eq!(company("Müller GmbH & Co. KG"), "muller");
        assert_eq!(company("The Company"), "the company");
    }

    #[test]
    fn soundex_matches_the_reference_codes() {
        assert_eq!(soundex("Robert"), "R163");
        assert_eq!(soundex("Rupert"), "R163");
        assert_eq!(soundex("Ashcraft"), "A261");
        assert_eq!(soundex("Tymczak"), "T522");
        assert_eq!(soundex("Pfister"), "P236");
        assert_eq!(soundex("Lee"), "L000");
        assert_eq!(soundex(""), "");
    }

    #[test]
    fn similarity_measures() {
        assert!(jaro_winkler("martha", "marhta") > 0.95);
        assert_eq!(damerau("4155550100", "4155551000"), 1);
        assert_eq!(digits("+1 (415) 555-0100"), "14155550100");
    }
}
