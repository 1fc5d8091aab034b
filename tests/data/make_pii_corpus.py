# ruff: noqa: E501  (hand-written corpus lists: one line per locale reads better than wrapping)
"""Writes `pii_corpus.tsv`, the labeled PII corpus of tests/test_pii_corpus.py (run by hand after
editing the lists below: `python tests/data/make_pii_corpus.py`).

Every line is `locale<TAB>type<TAB>value<TAB>text`: for a PII type, `value` is the exact substring
that must not survive masking; for `LOOKALIKE`, the substring that must survive byte-for-byte (and
the line holds no PII at all). Names, addresses and templates are written by hand for seven
locales; `\\n` in the text stands for a line break.
"""

from __future__ import annotations

import itertools
from pathlib import Path

NAMES: dict[str, list[str]] = {
    "en": ["Emily Clarke", "James O'Brien", "Sarah Johnson", "Michael Thompson", "Olivia Bennett",
           "Daniel Hughes", "Charlotte Evans", "Thomas Wright", "Mary-Jane Watson", "Oliver Smith"],
    "de": ["Klaus Müller", "Anna Schmidt", "Jürgen Weiß", "Sabine Fischer", "Lukas Becker",
           "Anna-Lena Hoffmann", "Stefan Schäfer", "Julia Wagner", "Matthias Koch", "Katharina Schulz"],
    "fr": ["Jean Dupont", "Marie Lefèvre", "François Martin", "Élodie Bernard", "Jean-Pierre Moreau",
           "Camille Laurent", "Nicolas Girard", "Sophie Rousseau", "Julien Fournier", "Amélie Dubois"],
    "es": ["María García", "José Fernández", "Lucía Martínez", "Javier López", "Carmen Sánchez",
           "Alejandro Gómez", "Ana Ruiz", "Pablo Hernández", "Laura Jiménez", "Sergio Díaz"],
    "it": ["Giulia Rossi", "Marco Bianchi", "Francesca Romano", "Alessandro Colombo", "Chiara Ricci",
           "Luca Esposito", "Valentina Conti", "Matteo Greco", "Federica Bruno", "Davide Gallo"],
    "nl": ["Jan de Vries", "Sanne Jansen", "Pieter van den Berg", "Emma Bakker", "Daan Visser",
           "Lotte Smit", "Bram Mulder", "Femke de Boer", "Thijs Meijer", "Anouk van Dijk"],
    "pt": ["João Silva", "Ana Santos", "Pedro Ferreira", "Inês Costa", "Tiago Oliveira",
           "Beatriz Pereira", "Rui Almeida", "Mariana Rodrigues", "Miguel Sousa", "Catarina Gomes"],
}  # fmt: skip

# Templates: {full} a full name, {first} its given name, {last} its family name (with particles).
NAME_TEMPLATES: dict[str, list[str]] = {
    "en": ["Hi {first},\\ncould you check the invoice?", "Please forward this to {full} in accounting.",
           "Best regards,\\n{full}", "Dr. {last} will review the draft tomorrow.",
           "{full} asked me to summarise the meeting.", "Can you write a reply to Mrs. {last}?"],
    "de": ["Hallo {first},\\nkannst du das prüfen?", "Bitte leite das an {full} weiter.",
           "Mit freundlichen Grüßen\\n{full}", "Sehr geehrte Frau Dr. {last}, vielen Dank.",
           "{full} hat den Vertrag unterschrieben.", "Herr {last} ruft morgen zurück."],
    "fr": ["Bonjour {first},\\npouvez-vous vérifier ?", "Merci de transmettre à {full}.",
           "Cordialement,\\n{full}", "Mme {last} a validé le devis.",
           "{full} m'a demandé un résumé.", "Écris une réponse à M. {last}."],
    "es": ["Hola {first},\\n¿puedes revisar esto?", "Reenvía esto a {full}, por favor.",
           "Un saludo,\\n{full}", "La Sra. {last} aprobó el presupuesto.",
           "{full} pidió un resumen de la reunión.", "Escribe una respuesta al Sr. {last}."],
    "it": ["Ciao {first},\\npuoi controllare?", "Inoltra questo a {full}, grazie.",
           "Cordiali saluti,\\n{full}", "Il Dott. {last} ha approvato il preventivo.",
           "{full} ha chiesto un riassunto.", "Scrivi una risposta alla Sig.ra {last}."],
    "nl": ["Hoi {first},\\nkun je dit nakijken?", "Stuur dit door naar {full}.",
           "Met vriendelijke groet,\\n{full}", "Mevr. {last} heeft de offerte goedgekeurd.",
           "{full} vroeg om een samenvatting.", "Schrijf een antwoord aan Dhr. {last}."],
    "pt": ["Olá {first},\\npodes verificar isto?", "Encaminha isto para {full}, por favor.",
           "Cumprimentos,\\n{full}", "A Sra. {last} aprovou o orçamento.",
           "{full} pediu um resumo da reunião.", "Escreve uma resposta ao Sr. {last}."],
}  # fmt: skip

ADDRESSES: dict[str, list[str]] = {
    "en": ["221B Baker Street, London NW1 6XE", "10 Downing Street, London SW1A 2AA",
           "350 Fifth Avenue, New York, NY 10118", "1600 Amphitheatre Parkway, Mountain View, CA 94043",
           "42 Wallaby Way, Sydney", "7 Elm Close, Oxford OX2 6PY", "15 Queen's Road, Brighton BN1 3XA",
           "88 Maple Drive, Springfield, IL 62704", "3 Kings Road, Chelsea", "29 Acacia Avenue"],
    "de": ["Hauptstraße 5, 10115 Berlin", "Karl-Marx-Straße 12, 10243 Berlin", "Bahnhofstr. 3, 80335 München",
           "Goethestraße 21, 60313 Frankfurt am Main", "Lindenallee 7, 50968 Köln", "Am Markt 4, 28195 Bremen",
           "Schillerplatz 2, 70173 Stuttgart", "Rosenweg 9, 01067 Dresden", "Kirchgasse 11, 65183 Wiesbaden",
           "Berliner Ring 15, 38440 Wolfsburg"],
    "fr": ["12 rue de la Paix, 75002 Paris", "8 avenue des Champs-Élysées, 75008 Paris",
           "45 boulevard Haussmann, 75009 Paris", "3 place Bellecour, 69002 Lyon",
           "17 rue Sainte-Catherine, 33000 Bordeaux", "5 bis rue Victor Hugo, 59000 Lille",
           "22 quai des Chartrons, 33000 Bordeaux", "9 chemin des Vignes, 13100 Aix-en-Provence",
           "101 avenue Jean Jaurès, 31000 Toulouse", "14 allée des Tilleuls, 44000 Nantes"],
    "es": ["Calle Mayor 10, 28013 Madrid", "Avenida de la Constitución 5, 41001 Sevilla",
           "Calle de Alcalá 45, 28014 Madrid", "Paseo de Gracia 92, 08008 Barcelona",
           "Plaza Mayor 1, 37002 Salamanca", "Calle Larios 3, 29005 Málaga",
           "Avenida Diagonal 640, 08017 Barcelona", "C/ Colón 12, 46004 Valencia",
           "Calle San Vicente 8, 46002 Valencia", "Gran Vía 28, 28013 Madrid"],
    "it": ["Via Roma 1, 00184 Roma", "Piazza del Duomo 3, 50122 Firenze", "Via Giuseppe Verdi 15, 20121 Milano",
           "Viale Europa 22, 00144 Roma", "Via dei Mille 7, 80121 Napoli", "Largo Augusto 4, 20122 Milano",
           "Via Garibaldi 9, 16124 Genova", "Piazza San Marco 1, 30124 Venezia",
           "Via della Spiga 30, 20121 Milano", "Corso Buenos Aires 33, 20124 Milano"],
    "nl": ["Keizersgracht 123, 1015 CJ Amsterdam", "Damrak 1, 1012 LG Amsterdam",
           "Coolsingel 40, 3011 AD Rotterdam", "Oudegracht 158, 3511 AZ Utrecht",
           "Lange Voorhout 34, 2514 EE Den Haag", "Stationsplein 9, 5611 AB Eindhoven",
           "Vondelstraat 41, 1054 GE Amsterdam", "Herengracht 502, 1017 CB Amsterdam",
           "Markt 5, 6211 CK Maastricht", "Kerkstraat 12, 9711 GH Groningen"],
    "pt": ["Rua Augusta 100, 1100-053 Lisboa", "Avenida da Liberdade 200, 1250-147 Lisboa",
           "Rua de Santa Catarina 50, 4000-447 Porto", "Praça do Comércio 1, 1100-148 Lisboa",
           "Rua Garrett 19, 1200-203 Lisboa", "Rua das Flores 7, 4050-262 Porto",
           "Avenida dos Aliados 30, 4000-064 Porto", "Travessa do Carmo 3, 1200-095 Lisboa",
           "Rua do Ouro 88, 1100-062 Lisboa", "Largo do Chiado 5, 1200-108 Lisboa"],
}  # fmt: skip

ADDRESS_TEMPLATES: dict[str, list[str]] = {
    "en": ["Ship it to {a} please.", "My address is {a}."],
    "de": ["Bitte an {a} liefern.", "Meine Adresse: {a}"],
    "fr": ["Livrez à {a}, merci.", "Mon adresse : {a}"],
    "es": ["Envíalo a {a}, gracias.", "Mi dirección es {a}."],
    "it": ["Spedisci a {a}, grazie.", "Il mio indirizzo è {a}."],
    "nl": ["Stuur het naar {a} alsjeblieft.", "Mijn adres is {a}."],
    "pt": ["Envia para {a}, obrigado.", "A minha morada é {a}."],
}

STRUCTURED: dict[str, list[tuple[str, str, str]]] = {
    "en": [("EMAIL", "emily.clarke@example.co.uk", "Email me at {v} when it's done."),
           ("PHONE", "+44 20 7946 0958", "Call the office on {v}."), ("PHONE", "(415) 555-0132", "US line {v}"),
           ("PHONE", "415-555-0132", "or text {v} after five"),
           ("US_SSN", "123-45-6789", "My SSN is {v}."), ("CREDIT_CARD", "4111 1111 1111 1111", "Card {v} exp 12/27"),
           ("IBAN", "GB82 WEST 1234 5698 7654 32", "Refund to {v} please."),
           ("IP_ADDRESS", "203.0.113.42", "The server at {v} times out."),
           ("SECRET", "sk-proj-Xy12abCD34efGH56ijKL78mnOP90", "my key is {v}"),
           ("SECRET", "AKIAIOSFODNN7EXAMPLE", "AWS key {v} leaked")],
    "de": [("EMAIL", "klaus.mueller@beispiel.de", "Schreiben Sie an {v}."),
           ("PHONE", "+49 30 12345678", "Sie erreichen mich unter {v}."), ("PHONE", "030 12345678", "Festnetz {v}"),
           ("PHONE", "0171 2345678", "Handy: {v}"),
           ("IBAN", "DE89 3704 0044 0532 0130 00", "Bitte überweisen an {v}."),
           ("CREDIT_CARD", "5555 5555 5555 4444", "Kreditkarte {v}"),
           ("IP_ADDRESS", "198.51.100.7", "Die IP {v} ist gesperrt."),
           ("SECRET", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "Token {v} bitte widerrufen")],
    "fr": [("EMAIL", "jean.dupont@exemple.fr", "Écrivez à {v}."),
           ("PHONE", "+33 1 23 45 67 89", "Appelez le {v}."), ("PHONE", "06 12 34 56 78", "Portable : {v}"),
           ("IBAN", "FR14 2004 1010 0505 0001 3M02 606", "Virement sur {v} svp."),
           ("CREDIT_CARD", "4012 8888 8888 1881", "Carte {v}"),
           ("IP_ADDRESS", "2001:db8::8a2e:370:7334", "Adresse IPv6 {v}"),
           ("SECRET", "sk-ant-api03-AbC123dEf456GhI789jKl012-_x", "clé {v}")],
    "es": [("EMAIL", "maria.garcia@ejemplo.es", "Mi correo es {v}."),
           ("PHONE", "+34 912 345 678", "Llámame al {v}."), ("PHONE", "612 345 678", "Móvil: {v}"),
           ("IBAN", "ES91 2100 0418 4502 0005 1332", "Transferencia a {v}."),
           ("CREDIT_CARD", "3782 822463 10005", "Tarjeta {v}"),
           ("IP_ADDRESS", "192.0.2.15", "La IP {v} está bloqueada.")],
    "it": [("EMAIL", "giulia.rossi@esempio.it", "Scrivimi a {v}."),
           ("PHONE", "+39 06 1234 5678", "Chiamami al {v}."), ("PHONE", "347 123 4567", "Cellulare {v}"),
           ("IBAN", "IT60 X054 2811 1010 0000 0123 456", "Bonifico su {v}."),
           ("CREDIT_CARD", "4111-1111-1111-1111", "Carta {v}"),
           ("IP_ADDRESS", "203.0.113.200", "Il server {v} non risponde.")],
    "nl": [("EMAIL", "jan.devries@voorbeeld.nl", "Mail naar {v}."),
           ("PHONE", "+31 20 123 4567", "Bel {v}."), ("PHONE", "06-12345678", "Mobiel: {v}"),
           ("PHONE", "020 123 4567", "Kantoor {v}"),
           ("IBAN", "NL91 ABNA 0417 1643 00", "Maak het over naar {v}."),
           ("CREDIT_CARD", "5555555555554444", "Creditcard {v}"),
           ("IP_ADDRESS", "198.51.100.23", "Het IP-adres {v} is geblokkeerd.")],
    "pt": [("EMAIL", "joao.silva@exemplo.pt", "O meu email é {v}."),
           ("PHONE", "+351 912 345 678", "Liga para {v}."), ("PHONE", "912 345 678", "Telemóvel: {v}"),
           ("IBAN", "PT50 0002 0123 1234 5678 9015 4", "Transferência para {v}."),
           ("CREDIT_CARD", "4111111111111111", "Cartão {v}"),
           ("IP_ADDRESS", "192.0.2.77", "O servidor {v} caiu.")],
}  # fmt: skip

# Text that must come back unchanged: numbers that are not PII, names of things, cities, months,
# weekdays, sentence-initial words that are also given names, greetings without a name.
LOOKALIKES: dict[str, list[str]] = {
    "en": ["Your order 1234567 shipped on 2025-08-20.", "Ticket 550e8400-e29b-41d4-a716-446655440000 is closed.",
           "Upgraded from v2.10.0-rc1 to 2.11.0 last week.", "The total is $1,234.56 plus tax.",
           "Claude and Gemini both answered in 350 ms.", "Mistral, Llama and Grok were slower.",
           "Will this work on Monday?", "May I ask a follow-up question?", "Mark the task as done.",
           "Paris and Berlin are in the test set.", "Baker Street is a famous street.",
           "Hi team, the build is green.", "Dear Sir or Madam, please find the report attached.",
           "Open Visual Studio Code and Microsoft Teams.", "Use Apple Music or Google Docs.",
           "Best regards, the support team", "The meeting moved to June 12.", "Chapter 5 has 12 pages.",
           "Python 3.11 and Rust 1.75 are supported.", "It used 1200 tokens and 42 retries.",
           "Amazon and Tesla reported earnings in April.", "Grace period ends on Friday.",
           "Room 12, third floor.", "Version 4111 1111 1111 1112 fails Luhn.",
           "Hello World is the first program.", "Paris is the capital of France.",
           "We ship to Germany, Italy and Georgia.", "Translate 'hello' to German.",
           "The time zone is Asia/Tokyo."],
    "de": ["Die Bestellung 7654321 wurde am 01.02.2025 versendet.", "Der Preis beträgt 1.299,00 €.",
           "Hallo zusammen, der Build ist grün.", "Im Mai und Juni ist das Büro geschlossen.",
           "Berlin und München sind dabei.", "Die Hauptstraße ist gesperrt.",
           "Am Montag kommt das Update 3.2.1.", "Mit freundlichen Grüßen, Ihr Support-Team",
           "Claude hat die Frage beantwortet.", "Die Rechnung Nr. 2024-0815 ist offen.",
           "Kapitel 7 hat 20 Seiten.", "Der Zug fährt um 10:05 Uhr."],
    "fr": ["La commande 998877 est partie le 20/08/2025.", "Le prix est de 19,99 €.",
           "Bonjour à tous, la version 1.4.0 est sortie.", "Paris et Lyon sont dans la liste.",
           "Rendez-vous lundi à 14h30.", "Cordialement, l'équipe support",
           "Gemini et Mistral ont répondu.", "La rue de la Paix est célèbre.",
           "Le ticket 42-1337 est fermé.", "En mai, il fait beau."],
    "es": ["El pedido 445566 llegó el 12/03/2025.", "El precio es 1.250,50 €.",
           "Hola a todos, la versión 2.0 ya está.", "Madrid y Sevilla están en la lista.",
           "El lunes hay reunión.", "Un saludo, el equipo de soporte",
           "Llama y Grok respondieron rápido.", "La Calle Mayor es muy larga.",
           "El capítulo 3 tiene 15 páginas.", "En abril cerramos."],
    "it": ["L'ordine 112233 è partito il 05.06.2025.", "Il prezzo è 49,90 €.",
           "Ciao a tutti, la versione 3.1 è pronta.", "Roma e Milano sono nella lista.",
           "Lunedì c'è la riunione.", "Cordiali saluti, il team di supporto",
           "Claude e Gemini hanno risposto.", "Via Roma è la strada principale.",
           "Il capitolo 4 ha 30 pagine.", "A maggio siamo chiusi."],
    "nl": ["Bestelling 778899 is op 15-04-2025 verzonden.", "De prijs is € 12,50.",
           "Hoi allemaal, versie 5.0 is uit.", "Amsterdam en Utrecht staan op de lijst.",
           "Maandag is er overleg.", "Met vriendelijke groet, het supportteam",
           "Mistral en Llama gaven antwoord.", "De Keizersgracht is mooi.",
           "Hoofdstuk 6 heeft 18 pagina's.", "In mei zijn we dicht."],
    "pt": ["A encomenda 334455 foi enviada a 10/10/2025.", "O preço é 9,99 €.",
           "Olá a todos, a versão 1.2 saiu.", "Lisboa e Porto estão na lista.",
           "Segunda-feira há reunião.", "Cumprimentos, a equipa de suporte",
           "O Claude e o Gemini responderam.", "A Rua Augusta é famosa.",
           "O capítulo 2 tem 10 páginas.", "Em junho fechamos."],
}  # fmt: skip


def _split(full: str) -> tuple[str, str]:
    first, _, last = full.partition(" ")
    return first, last


def lines() -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    for loc, names in NAMES.items():
        templates = itertools.cycle(NAME_TEMPLATES[loc])
        for full in names:
            first, last = _split(full)
            for _ in range(4):  # four contexts per name
                template = next(templates)
                value = full if "{full}" in template else first if "{first}" in template else last
                out.append((loc, "PERSON", value, template.format(full=full, first=first, last=last)))
        for i, address in enumerate(ADDRESSES[loc]):
            for template in ADDRESS_TEMPLATES[loc][: 1 + i % 2]:
                out.append((loc, "ADDRESS", address, template.format(a=address)))
        for pii_type, value, template in STRUCTURED[loc]:
            out.append((loc, pii_type, value, template.format(v=value)))
        for text in LOOKALIKES[loc]:
            out.append((loc, "LOOKALIKE", text, text))
    return out


def main() -> None:
    rows = lines()
    path = Path(__file__).with_name("pii_corpus.tsv")
    header = "# Generated by make_pii_corpus.py: locale, type, value, text (\\n is a line break).\n"
    path.write_text(header + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} lines")


if __name__ == "__main__":
    main()
