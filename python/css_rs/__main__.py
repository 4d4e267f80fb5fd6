from css_rs.cli import main

main()
